"""Templates, as the engine keeps them: the Blank template every engine has, templates made from a VM (its disks
copied into template disks: AddVmTemplateCommand) and VMs made from a template (the template's disks copied for the
VM, the VM configured from the template). Also the permissions sub-collection every entity links to.

Template disks are rows of the disks table marked with their template_id, their images real (qemu-img convert of the
VM's current content); a template's own attachments (interface, bootable) are kept in the template.
"""
from __future__ import annotations

import asyncio
import logging

import ovirtsdk4.types as t
from aiohttp import web
from ovirtsdk4.reader import Reader

from ..procs import run
from . import render, search
from .engine import STEP, Engine, _mac
from .errors import ApiError, conflict, incomplete, not_found
from .state import NotFound, new_id, now

log = logging.getLogger(__name__)

BLANK_ID = render.BLANK_TEMPLATE_ID
BLANK = {"id": BLANK_ID, "name": "Blank", "description": "Blank template", "memory": 1 << 30,
         "cpu": {"sockets": 1, "cores": 1, "threads": 1}, "os": "other", "cluster_id": None, "status": "ok",
         "created": "2008-04-01T00:00:00.000+00:00", "disks": [], "nics": [], "vm_id": None}
PERMISSION_OWNERS = {"vms": "vms", "disks": "disks", "templates": "templates", "clusters": "clusters",
                     "hosts": "hosts", "datacenters": "data_centers", "storagedomains": "storage_domains"}


def copy_image(store, src_id: str, dst_id: str, size: int, fmt: str) -> None:
    """A new image for dst_id holding every guest-visible byte of src_id now (its whole chain, flattened)."""
    store.create(dst_id, size, fmt)
    src, src_fmt = store.volume_path(src_id)
    dst, dst_fmt = store.volume_path(dst_id)
    run("qemu-img", "convert", "-n", "--target-is-zero", "-f", src_fmt, "-O", dst_fmt, str(src), str(dst))


def _xml(obj, root: str | None = None, status: int = 200) -> web.Response:
    return web.Response(text=render.xml(obj, root=root), status=status, content_type="application/xml")


class Templates:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.state = engine.state
        self.table: dict[str, dict] = self.state.data.setdefault("templates", {})
        # After a restart: a copy that was running is gone; what it left is as the engine would find it.
        for tpl in self.table.values():
            if tpl["status"] == "locked":
                tpl["status"] = "ok" if all(self.engine.store.exists(d["disk_id"]) for d in tpl["disks"]) \
                    else "illegal"
        for vm in self.state.table("vms").values():
            if vm["status"] == "image_locked":
                vm["status"] = "down"

    def routes(self, r: web.UrlDispatcher, p: str) -> None:
        r.add_get(p + "/templates", self.list)
        r.add_get(p + "/templates/{id}", self.get)
        r.add_post(p + "/templates", self.add)
        r.add_delete(p + "/templates/{id}", self.remove)
        r.add_get(p + "/templates/{id}/diskattachments", self.attachments)
        r.add_get(p + "/templates/{id}/diskattachments/{att}", self.attachments)
        r.add_get(p + "/templates/{id}/nics", self.nics)
        r.add_get(p + "/templates/{id}/tags", self.tags)
        for coll in PERMISSION_OWNERS:
            r.add_get(f"{p}/{coll}/{{id}}/permissions", self.permissions)

    # -- lookups ------------------------------------------------------------------------------------------------
    def all(self) -> list[dict]:
        return [BLANK, *sorted(self.table.values(), key=lambda g: g["created"])]

    def find(self, ref_id: str | None, ref_name: str | None) -> dict:
        hit = next((g for g in self.all() if (ref_id and g["id"] == ref_id) or (not ref_id and g["name"] == ref_name)),
                   None)
        if hit is None:
            raise not_found(f"template {ref_id or ref_name}")
        return hit

    def disks(self, tpl: dict) -> list[tuple[dict, dict]]:
        return [(self.state.get("disks", a["disk_id"]), a) for a in tpl["disks"]
                if a["disk_id"] in self.state.table("disks")]

    # -- rendering ----------------------------------------------------------------------------------------------
    def render(self, g: dict) -> t.Template:
        cluster = g.get("cluster_id")
        obj = t.Template(
            id=g["id"], name=g["name"], description=g.get("description", ""), status=t.TemplateStatus(g["status"]),
            memory=g["memory"], cpu=t.Cpu(topology=t.CpuTopology(**g["cpu"])), os=t.OperatingSystem(type=g["os"]),
            creation_time=render._date(g["created"]), type=t.VmType.SERVER, stateless=False,
            cluster=render._href(t.Cluster(id=cluster), f"clusters/{cluster}") if cluster else None,
            version=t.TemplateVersion(version_number=1, base_template=render._href(
                t.Template(id=g["id"]), f"templates/{g['id']}")))
        return render._href(obj, f"templates/{g['id']}")

    def _attachment(self, g: dict, d: dict, a: dict) -> t.DiskAttachment:
        return render._href(t.DiskAttachment(
            id=d["id"], active=True, bootable=a["bootable"], interface=t.DiskInterface(a["interface"]),
            pass_discard=False, read_only=False, uses_scsi_reservation=False,
            disk=render._href(t.Disk(id=d["id"]), f"disks/{d['id']}"),
            template=render._href(t.Template(id=g["id"]), f"templates/{g['id']}")),
            f"templates/{g['id']}/diskattachments/{d['id']}")

    # -- handlers -----------------------------------------------------------------------------------------------
    async def list(self, request: web.Request) -> web.Response:
        items = search.select(self.all(), request.query.get("search"), {
            "name": lambda g: [g["name"]], "id": lambda g: [g["id"]], "status": lambda g: [g["status"]]},
            case_sensitive=(request.query.get("case_sensitive") or "").lower() == "true",
            max_items=int(request.query["max"]) if request.query.get("max", "").isdigit() else None,
            text=lambda g: f"{g['name']} {g.get('description', '')}")
        return _xml([self.render(g) for g in items], root="templates")

    async def get(self, request: web.Request) -> web.Response:
        return _xml(self.render(self.find(request.match_info["id"], None)))

    async def attachments(self, request: web.Request) -> web.Response:
        g = self.find(request.match_info["id"], None)
        atts = [self._attachment(g, d, a) for d, a in self.disks(g)]
        if "att" in request.match_info:
            hit = next((a for a in atts if a.id == request.match_info["att"]), None)
            if hit is None:
                raise not_found(f"disk attachment {request.match_info['att']}")
            return _xml(hit)
        return _xml(atts, root="disk_attachments")

    async def nics(self, request: web.Request) -> web.Response:
        g = self.find(request.match_info["id"], None)
        return _xml([render._href(t.Nic(id=n["id"], name=n["name"], interface=t.NicInterface(n["interface"]),
                                        template=render._href(t.Template(id=g["id"]), f"templates/{g['id']}"),
                                        vnic_profile=t.VnicProfile(name=n["network"])),
                                  f"templates/{g['id']}/nics/{n['id']}") for n in g.get("nics", [])], root="nics")

    async def tags(self, request: web.Request) -> web.Response:
        self.find(request.match_info["id"], None)
        return _xml([], root="tags")

    async def permissions(self, request: web.Request) -> web.Response:
        coll = request.path.rstrip("/").split("/")[-3]
        entity_id = request.match_info["id"]
        if coll == "templates":
            self.find(entity_id, None)
        else:
            self.engine.get(PERMISSION_OWNERS[coll], entity_id)
        return _xml([render.permission(coll, entity_id)], root="permissions")

    async def add(self, request: web.Request) -> web.Response:
        text = await request.text()
        try:
            body = Reader.read(text) if text.strip() else None
        except Exception as e:
            raise ApiError(400, f"Failed to parse the request body: {e}", reason="Request syntactically incorrect.") \
                from None
        if not isinstance(body, t.Template) or not body.name or body.vm is None or not (body.vm.id or body.vm.name):
            raise incomplete("Template [name, vm.id|name] required for add")
        correlation = request.query.get("correlation_id") or request.headers.get("Correlation-Id")
        tpl = self.add_template(name=body.name, vm_ref=body.vm.id or body.vm.name, description=body.description,
                                correlation_id=correlation)
        return _xml(self.render(tpl), status=201)

    async def remove(self, request: web.Request) -> web.Response:
        await self.remove_template(request.match_info["id"])
        return _xml(t.Action(status="complete"))

    def _copy_row(self, src: dict, **extra) -> dict:
        """The disk row of a copy of src (same alias, size, format and domain), locked until its image is made."""
        return self.state.put("disks", {
            "id": new_id(), "image_id": new_id(), "name": src["name"], "provisioned_size": src["provisioned_size"],
            "format": src["format"], "sparse": src.get("sparse", True), "storage_domain_id": src["storage_domain_id"],
            "backup": "none", "content_type": src.get("content_type", "data"),
            "description": src.get("description", ""), "status": "locked", **extra})

    # -- commands -----------------------------------------------------------------------------------------------
    def add_template(self, *, name: str, vm_ref: str, description: str | None, correlation_id: str | None) -> dict:
        """AddVmTemplate from a VM: the VM must be down and its disks unlocked; the template is locked (and the VM
        image_locked) while the VM's disks are copied into the template's, then ok."""
        try:
            vm = self.state.by_name("vms", vm_ref)
        except NotFound:
            raise not_found(f"VM {vm_ref}") from None
        if any(g["name"] == name for g in self.all()):
            raise conflict("Cannot add Template. The Template name is already in use, please choose a unique name "
                           "and try again.")
        if vm["status"] != "down":
            raise conflict(f"Cannot add Template. VM {vm['name']} is not down.")
        if self.engine.running_backup(vm["id"]):
            raise conflict(f"Cannot add Template. VM {vm['name']} is during a backup operation.")
        sources = self.engine.vm_disks(vm["id"])
        locked = [d["name"] for d, _ in sources if d["status"] != "ok"]
        if locked:
            raise conflict(f"Cannot add Template. Disks {', '.join(locked)} are locked. Please try again in a few "
                           "minutes.")
        tpl_id = new_id()
        pairs = []
        for src, att in sources:
            dst = self._copy_row(src, template_id=tpl_id)
            pairs.append((src, dst, att))
        tpl = {"id": tpl_id, "name": name, "description": description or "", "memory": vm["memory"],
               "cpu": dict(vm["cpu"]), "os": vm["os"], "cluster_id": vm["cluster_id"], "status": "locked",
               "created": now(), "vm_id": vm["id"],
               "nics": [dict(n, id=new_id()) for n in vm.get("nics", [])],
               "disks": [{"disk_id": dst["id"], "interface": att["interface"], "bootable": att["bootable"]}
                         for _, dst, att in pairs]}
        self.table[tpl_id] = tpl
        vm["status"] = "image_locked"
        self.engine.event(48, f"Creation of Template {name} from VM {vm['name']} was initiated by "
                              "admin@internal-authz.", vm_id=vm["id"], correlation_id=correlation_id)

        async def build():
            job = self.engine.start_job(f"Creating VM Template {name} from VM {vm['name']}", correlation_id)
            ok = True
            try:
                for src, dst, _ in pairs:
                    await asyncio.to_thread(copy_image, self.engine.store, src["id"], dst["id"],
                                            src["provisioned_size"], src["format"])
                    dst["status"] = "ok"
            except Exception:
                log.exception("copying the disks of VM %s into template %s failed", vm["name"], name)
                ok = False
            await asyncio.sleep(STEP)
            for _, dst, _ in pairs:
                if dst["status"] == "locked":
                    dst["status"] = "illegal"
            tpl["status"] = "ok" if ok else "illegal"
            if vm["status"] == "image_locked":
                vm["status"] = "down"
            self.engine.end_job(job, ok)
            if ok:
                self.engine.event(49, f"Creation of Template {name} from VM {vm['name']} has been completed.",
                                  vm_id=vm["id"], correlation_id=correlation_id)
            else:
                self.engine.event(50, f"Failed to complete creation of Template {name} from VM {vm['name']}.",
                                  severity="error", vm_id=vm["id"], correlation_id=correlation_id)
        self.engine.spawn(build(), f"template {name}")
        self.state.save()
        return tpl

    async def remove_template(self, tpl_id: str) -> None:
        tpl = self.find(tpl_id, None)
        if tpl["id"] == BLANK_ID:
            raise ApiError(400, "[Cannot delete Blank Template.]")
        if tpl["status"] == "locked":
            raise conflict(f"Cannot delete Template. Template {tpl['name']} is locked. Please try again in a few "
                           "minutes.")
        users = [v["name"] for v in self.state.table("vms").values() if v.get("template_id") == tpl["id"]]
        if users:
            raise conflict(f"Cannot delete Template. Template is being used by the following VMs: {','.join(users)}.")
        for d, _ in self.disks(tpl):
            self.state.delete("disks", d["id"])
            await asyncio.to_thread(self.engine.store.remove, d["id"])
        del self.table[tpl["id"]]
        self.engine.event(52, f"Removal of Template {tpl['name']} has been completed.")

    def template_for_vm(self, ref_id: str | None, ref_name: str | None) -> dict:
        """The template a new VM is based on (validated before the VM is created)."""
        tpl = self.find(ref_id, ref_name)
        if tpl["status"] != "ok":
            raise conflict(f"Cannot add VM. Template {tpl['name']} is {tpl['status']}. Please try again in a few "
                           "minutes.")
        return tpl

    def instantiate(self, vm: dict, tpl: dict, correlation_id: str | None) -> None:
        """A new VM from a template (a clone, as AddVmFromTemplate with clone=true): a copy of each template disk,
        with the template disk's alias, attached as the template has it; the VM is image_locked until the copies
        are done. NICs come from the template when the request named none."""
        vm["template_id"] = None if tpl["id"] == BLANK_ID else tpl["id"]
        if not vm.get("nics"):
            vm["nics"] = [dict(n, id=new_id(), mac=_mac()) for n in tpl.get("nics", [])]
        pairs = []
        for src, a in self.disks(tpl):
            dst = self._copy_row(src)
            self.state.put("attachments", {"id": dst["id"], "vm_id": vm["id"], "disk_id": dst["id"],
                                           "interface": a["interface"], "bootable": a["bootable"], "active": True,
                                           "snapshot_id": None, "read_only": False})
            pairs.append((src, dst))
        self.state.save()
        if not pairs:
            return
        vm["status"] = "image_locked"

        async def clone():
            ok = True
            try:
                for src, dst in pairs:
                    await asyncio.to_thread(copy_image, self.engine.store, src["id"], dst["id"],
                                            src["provisioned_size"], src["format"])
                    dst["status"] = "ok"
            except Exception:
                log.exception("copying the disks of template %s for VM %s failed", tpl["name"], vm["name"])
                ok = False
            await asyncio.sleep(STEP)
            for _, dst in pairs:
                if dst["status"] == "locked":
                    dst["status"] = "illegal"
            if vm["status"] == "image_locked":
                vm["status"] = "down"
            if ok:
                self.engine.event(53, f"VM {vm['name']} creation has been completed.", vm_id=vm["id"],
                                  correlation_id=correlation_id)
            else:
                self.engine.event(60, f"Failed to complete VM {vm['name']} creation.", severity="error",
                                  vm_id=vm["id"], correlation_id=correlation_id)
        self.engine.spawn(clone(), f"VM {vm['name']} from template {tpl['name']}")
