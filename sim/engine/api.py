"""The engine's REST API v4 and SSO over aiohttp: requests parsed with ovirtsdk4's readers, answers written with its
writers, statuses and <fault> bodies as the engine sends them (see shared/OLVM_API.md)."""
from __future__ import annotations

import asyncio
import logging
import secrets

import ovirtsdk4.types as t
from aiohttp import web
from ovirtsdk4.reader import Reader

from . import diskactions, render, search, snapshots
from .engine import Engine
from .errors import ApiError, failed, incomplete, not_found
from .templates import Templates

log = logging.getLogger(__name__)

API = "/ovirt-engine/api"
XML = "application/xml"


# -- helpers -------------------------------------------------------------------------------------------------
def _xml(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type=XML)


def _one(obj, status: int = 200) -> web.Response:
    return _xml(render.xml(obj), status)


def _many(objs: list, root: str) -> web.Response:
    return _xml(render.xml(objs, root=root))


def _enum(value) -> str | None:
    return value.value if value is not None and hasattr(value, "value") else value


async def _body(request: web.Request):
    text = await request.text()
    if not text.strip():
        return None
    try:
        return Reader.read(text)
    except Exception as e:
        raise ApiError(400, f"Failed to parse the request body: {e}",
                       reason="Request syntactically incorrect.") from None


def _flag(request: web.Request, name: str, header: str | None = None) -> bool:
    value = request.query.get(name) or (request.headers.get(header) if header else None)
    return (value or "").lower() == "true"


def _follow(request: web.Request) -> frozenset[str]:
    """The links `follow` names (comma-separated); the simulator follows a VM's `tags` and `cluster` only."""
    return frozenset(x.strip() for x in request.query.get("follow", "").split(",") if x.strip())


def _correlation(request: web.Request) -> str | None:
    return request.query.get("correlation_id") or request.headers.get("Correlation-Id")


def _max(request: web.Request) -> int | None:
    value = request.query.get("max")
    return int(value) if value and value.lstrip("-").isdigit() and int(value) >= 0 else None


def _action_ok() -> web.Response:
    return _xml(render.action())


# -- the application -----------------------------------------------------------------------------------------
class Api:
    def __init__(self, engine: Engine, username: str, password: str) -> None:
        self.engine = engine
        self.state = engine.state
        self.username = username
        self.password = password
        self.tokens: set[str] = set()
        self.templates = Templates(engine)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.middleware], client_max_size=1 << 24)
        r = app.router
        for prefix in (API, API + "/v4"):
            self._routes(r, prefix)
        r.add_post("/ovirt-engine/sso/oauth/token", self.sso_token)
        r.add_post("/ovirt-engine/services/sso-logout", self.sso_logout)
        return app

    def _routes(self, r: web.UrlDispatcher, p: str) -> None:
        r.add_get(p, self.root)
        r.add_get(p + "/", self.root)
        for coll, fn in (("datacenters", self.data_centers), ("clusters", self.clusters), ("hosts", self.hosts),
                         ("storagedomains", self.storage_domains)):
            r.add_get(f"{p}/{coll}", fn)
            r.add_get(f"{p}/{coll}/{{id}}", fn)
        r.add_get(p + "/storagedomains/{sd}/disksnapshots", self.sd_disk_snapshots)
        r.add_get(p + "/storagedomains/{sd}/disksnapshots/{id}", self.sd_disk_snapshots)
        r.add_get(p + "/storagedomains/{sd}/disks", self.sd_disks)
        r.add_get(p + "/storagedomains/{sd}/disks/{id}", self.sd_disks)
        r.add_post(p + "/storagedomains/{sd}/disks", self.add_disk)
        r.add_put(p + "/storagedomains/{sd}/disks/{id}", self.update_disk)
        r.add_delete(p + "/storagedomains/{sd}/disks/{id}", self.remove_disk)
        r.add_get(p + "/vms", self.vms)
        r.add_post(p + "/vms", self.add_vm)
        r.add_get(p + "/vms/{vm}", self.vm)
        r.add_put(p + "/vms/{vm}", self.update_vm)
        r.add_delete(p + "/vms/{vm}", self.remove_vm)
        for verb in ("start", "stop", "shutdown"):
            r.add_post(p + f"/vms/{{vm}}/{verb}", self.power)
        r.add_get(p + "/vms/{vm}/nics", self.nics)
        r.add_get(p + "/vms/{vm}/diskattachments", self.attachments)
        r.add_get(p + "/vms/{vm}/diskattachments/{id}", self.attachments)
        r.add_post(p + "/vms/{vm}/diskattachments", self.attach)
        r.add_put(p + "/vms/{vm}/diskattachments/{id}", self.update_attachment)
        r.add_delete(p + "/vms/{vm}/diskattachments/{id}", self.detach)
        r.add_get(p + "/vms/{vm}/snapshots", self.snapshots)
        r.add_get(p + "/vms/{vm}/snapshots/{id}", self.snapshots)
        r.add_post(p + "/vms/{vm}/snapshots", self.add_snapshot)
        r.add_delete(p + "/vms/{vm}/snapshots/{id}", self.remove_snapshot)
        r.add_get(p + "/vms/{vm}/snapshots/{id}/disks", self.snapshot_disks)
        r.add_post(p + "/vms/{vm}/snapshots/{id}/restore", self.restore_snapshot)
        r.add_get(p + "/vms/{vm}/backups", self.backups)
        r.add_get(p + "/vms/{vm}/backups/{id}", self.backups)
        r.add_post(p + "/vms/{vm}/backups", self.add_backup)
        r.add_post(p + "/vms/{vm}/backups/{id}/finalize", self.finalize_backup)
        r.add_get(p + "/vms/{vm}/backups/{id}/disks", self.backup_disks)
        r.add_get(p + "/vms/{vm}/checkpoints", self.checkpoints)
        r.add_get(p + "/vms/{vm}/checkpoints/{id}", self.checkpoints)
        r.add_get(p + "/vms/{vm}/checkpoints/{id}/disks", self.checkpoint_disks)
        r.add_delete(p + "/vms/{vm}/checkpoints/{id}", self.remove_checkpoint)
        r.add_get(p + "/vms/{vm}/tags", self.vm_tags)
        r.add_get(p + "/vms/{vm}/tags/{id}", self.vm_tags)
        r.add_post(p + "/vms/{vm}/tags", self.assign_tag)
        r.add_delete(p + "/vms/{vm}/tags/{id}", self.unassign_tag)
        r.add_get(p + "/disks", self.disks)
        r.add_get(p + "/disks/{id}", self.disks)
        r.add_post(p + "/disks", self.add_disk)
        r.add_put(p + "/disks/{id}", self.update_disk)
        r.add_delete(p + "/disks/{id}", self.remove_disk)
        r.add_get(p + "/disks/{id}/disksnapshots", self.disk_snapshots)
        for verb in ("reduce", "sparsify"):
            r.add_post(p + f"/disks/{{id}}/{verb}", self.disk_action)
        r.add_get(p + "/imagetransfers", self.transfers)
        r.add_get(p + "/imagetransfers/{id}", self.transfers)
        r.add_post(p + "/imagetransfers", self.add_transfer)
        for verb in ("finalize", "cancel", "extend", "pause", "resume"):
            r.add_post(p + f"/imagetransfers/{{id}}/{verb}", self.transfer_action)
        r.add_get(p + "/tags", self.tags)
        r.add_get(p + "/tags/{id}", self.tags)
        r.add_post(p + "/tags", self.add_tag)
        r.add_put(p + "/tags/{id}", self.update_tag)
        r.add_delete(p + "/tags/{id}", self.remove_tag)
        r.add_get(p + "/events", self.events)
        r.add_get(p + "/events/{id}", self.events)
        r.add_post(p + "/events", self.add_event)
        r.add_get(p + "/jobs", self.jobs)
        r.add_get(p + "/jobs/{id}", self.jobs)
        self.templates.routes(r, p)

    # -- middleware: faults on demand, auth, version, error rendering ----------------------------------------
    @web.middleware
    async def middleware(self, request: web.Request, handler):
        path = request.path
        if path.startswith(API):
            faults = self.engine.faults
            if faults.take("engine_drop"):
                if request.transport is not None:
                    request.transport.close()
                raise asyncio.CancelledError()
            if faults.take("engine_500"):
                return _xml(render.fault("Internal Server Error", "Injected fault: the engine failed"), 500)
            auth = request.headers.get("Authorization", "")
            if not (auth.startswith("Bearer ") and auth[7:] in self.tokens):
                response = _xml(render.fault("Unauthorized", "Authentication required: send a valid SSO token "
                                                             "(Authorization: Bearer)"), 401)
                response.headers["WWW-Authenticate"] = 'Bearer realm="oVirt"'
                return response
            version = request.headers.get("Version")
            if version not in (None, "", "4"):
                return _xml(render.fault("Bad Request", f"Version {version} is not supported"), 400)
        try:
            response = await handler(request)
            if request.method == "POST" and path.startswith(API) and self.engine.faults.take("answer_lost"):
                if request.transport is not None:  # done, as a client whose answer timed out cannot know
                    request.transport.close()
                raise asyncio.CancelledError()
        except ApiError as e:
            return _xml(render.fault(e.reason, e.detail), e.status)
        except web.HTTPException as e:  # aiohttp's own: no route (404), no such method (405), body too large...
            if e.status < 400 or not path.startswith("/ovirt-engine"):
                raise
            detail = (f"Entity not found: no resource at {path}" if e.status == 404 else
                      f"HTTP method {request.method} is not allowed on {path}" if e.status == 405 else e.text or "")
            response = _xml(render.fault(e.reason, detail), e.status)
            if "Allow" in e.headers:
                response.headers["Allow"] = e.headers["Allow"]
            return response
        except Exception as e:
            log.exception("%s %s failed", request.method, path)
            return _xml(render.fault("Operation Failed", f"[Internal engine error: {e}]"), 500)
        if request.method in ("POST", "PUT", "DELETE") and path.startswith(API):
            self.state.save()
        return response

    # -- SSO -----------------------------------------------------------------------------------------------------
    async def sso_token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("username") != self.username or form.get("password") != self.password:
            return web.json_response({"error_code": "access_denied",
                                      "error": "Cannot authenticate user 'admin@internal': The username or password "
                                               "is incorrect."}, status=400)
        token = secrets.token_urlsafe(32)
        self.tokens.add(token)
        self.state.event(30, f"User {self.username} connected from '127.0.0.1' using session "
                             f"'{token[:10]}' logged in.")
        return web.json_response({"access_token": token, "scope": "ovirt-app-api", "exp": "9999999999999",
                                  "token_type": "bearer"})

    async def sso_logout(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.tokens.discard(form.get("token"))
        return web.json_response({})

    # -- system --------------------------------------------------------------------------------------------------
    async def root(self, request):
        return _one(render.api_root(self.state))

    def _collection(self, request, table: str, renderer, root: str, fields: dict):
        if "id" in request.match_info:
            return _one(renderer(self.engine.get(table, request.match_info["id"])))
        items = search.select(list(self.state.table(table).values()), request.query.get("search"), fields,
                              case_sensitive=_flag(request, "case_sensitive"), max_items=_max(request))
        return _many([renderer(e) for e in items], root)

    async def data_centers(self, request):
        def storage(dc):
            return [sd["name"] for sd in self.state.table("storage_domains").values()
                    if sd["data_center_id"] == dc["id"]]
        return self._collection(request, "data_centers", render.data_center, "data_centers",
                                {"name": lambda e: [e["name"]], "storage.name": storage, "storage": storage})

    async def clusters(self, request):
        return self._collection(request, "clusters", render.cluster, "clusters", {"name": lambda e: [e["name"]]})

    async def hosts(self, request):
        def dc(h):
            c = self.state.table("clusters").get(h["cluster_id"])
            return [self.state.get("data_centers", c["data_center_id"])["name"]] if c else []
        return self._collection(request, "hosts", render.host, "hosts", {
            "name": lambda e: [e["name"]], "status": lambda e: ["up"], "hw_id": lambda e: [e.get("hw_id", "")],
            "datacenter": dc})

    def _sd(self, sd: dict) -> t.StorageDomain:
        used = sum(d["provisioned_size"] for d in self.state.table("disks").values()
                   if d["storage_domain_id"] == sd["id"])
        return render.storage_domain(sd, used)

    async def storage_domains(self, request):
        return self._collection(request, "storage_domains", self._sd, "storage_domains",
                                {"name": lambda e: [e["name"]]})

    # -- VMs -----------------------------------------------------------------------------------------------------
    def _vm_fields(self) -> dict:
        tags = self.state.table("tags")
        return {"name": lambda v: [v["name"]], "id": lambda v: [v["id"]], "status": lambda v: [v["status"]],
                "tag": lambda v: [tags[g]["name"] for g in v["tags"] if g in tags],
                "cluster": lambda v: [self.state.table("clusters").get(v["cluster_id"], {}).get("name", "")]}

    def _render_vm(self, vm: dict, all_content: bool, follow: frozenset[str] = frozenset()) -> t.Vm:
        obj = render.vm(vm, self.engine.ovf(vm) if all_content else None)
        # `follow` inlines linked entities, as the engine's does (4.2+): the VM's tags and its whole cluster.
        if "tags" in follow:
            tags = self.state.table("tags")
            obj.tags = [render.tag(tags[g]) for g in vm["tags"] if g in tags]
        if "cluster" in follow and vm["cluster_id"] in self.state.table("clusters"):
            obj.cluster = render.cluster(self.state.get("clusters", vm["cluster_id"]))
        return obj

    async def vms(self, request):
        all_content = _flag(request, "all_content", "All-Content")
        items = search.select(list(self.state.table("vms").values()), request.query.get("search"),
                              self._vm_fields(), case_sensitive=_flag(request, "case_sensitive"),
                              max_items=_max(request), text=lambda v: f"{v['name']} {v.get('description', '')}")
        follow = _follow(request)
        return _many([self._render_vm(v, all_content, follow) for v in items], "vms")

    async def vm(self, request):
        return _one(self._render_vm(self.engine.vm(request.match_info["vm"]),
                                    _flag(request, "all_content", "All-Content"), _follow(request)))

    async def add_vm(self, request):
        body = await _body(request)
        if not isinstance(body, t.Vm):
            raise incomplete("Vm [name, cluster] required for add")
        cluster = self.engine.cluster_of(body.cluster.id if body.cluster else None,
                                         body.cluster.name if body.cluster else None)
        init = body.initialization
        config = init.configuration if init is not None else None
        if config is not None and (config.data is None or config.type is None):
            raise incomplete("Vm [initialization.configuration.type, initialization.configuration.data] required "
                             "for add")
        topology = body.cpu.topology if body.cpu is not None and body.cpu.topology is not None else None
        if body.snapshots and config is None:  # a VM from a snapshot of another: its configuration and disks
            vm = snapshots.add_vm_from_snapshot(
                self.engine, snapshot_id=body.snapshots[0].id, name=body.name, cluster=cluster, memory=body.memory,
                cpu={"sockets": topology.sockets or 1, "cores": topology.cores or 1, "threads": topology.threads or 1}
                if topology else None, os_type=body.os.type if body.os is not None else None,
                description=body.description, correlation_id=_correlation(request))
            return _one(render.vm(vm), 201)
        tpl = self.templates.template_for_vm(body.template.id, body.template.name) \
            if body.template is not None and config is None else None
        vm = self.engine.add_vm(
            name=body.name, cluster=cluster, configuration=config.data if config is not None else None,
            regenerate_ids=bool(init.regenerate_ids) if init is not None else False,
            memory=body.memory or (tpl["memory"] if tpl else None),
            cpu={"sockets": topology.sockets or 1, "cores": topology.cores or 1, "threads": topology.threads or 1}
            if topology else (dict(tpl["cpu"]) if tpl else None),
            os_type=body.os.type if body.os is not None else (tpl["os"] if tpl else None),
            description=body.description, correlation_id=_correlation(request),
            configuration_type=_enum(config.type) if config is not None else "ovf")
        if tpl is not None:
            self.templates.instantiate(vm, tpl, _correlation(request))
        return _one(render.vm(vm), 201)

    async def remove_vm(self, request):
        await self.engine.remove_vm(request.match_info["vm"], detach_only=_flag(request, "detach_only"))
        return _action_ok()

    async def power(self, request):
        verb = request.path.rsplit("/", 1)[-1]
        self.engine.set_power(request.match_info["vm"], verb, _correlation(request))
        return _action_ok()

    async def nics(self, request):
        vm = self.engine.vm(request.match_info["vm"])
        return _many([render.nic(vm["id"], n) for n in vm.get("nics", [])], "nics")

    # -- disks and attachments ----------------------------------------------------------------------------------
    def _disk(self, d: dict, **kw) -> t.Disk:
        actual = 0
        if d["status"] != "locked" and self.engine.store.exists(d["id"]):
            try:
                actual = self.engine.store.info(d["id"])["actual_size"]
            except Exception:
                actual = 0
        return render.disk(d, actual, **kw)

    async def disks(self, request):
        return self._collection(request, "disks", self._disk, "disks", {
            "name": lambda d: [d["name"]], "alias": lambda d: [d["name"]], "id": lambda d: [d["id"]],
            "status": lambda d: [d["status"]]})

    async def add_disk(self, request):
        body = await _body(request)
        if not isinstance(body, t.Disk):
            raise incomplete("Disk [provisioned_size, format, storage_domains] required for add")
        disk = self.engine.add_disk(disk_id=body.id, correlation_id=_correlation(request),
                                    **self._new_disk(request, body))
        return _one(render.disk(disk), 202)

    def _new_disk(self, request, body: t.Disk) -> dict:
        """A disk definition to add: its storage domain is the one in the path (/storagedomains/{sd}/disks), else
        the first of disk.storage_domains."""
        if "sd" in request.match_info:
            sd = self.engine.get("storage_domains", request.match_info["sd"], "storage domain")
        else:
            sds = body.storage_domains or []
            sd = self.engine.storage_domain(sds[0].id if sds else None, sds[0].name if sds else None)
        if body.format is None:
            raise incomplete("Disk [format] required for add")
        return dict(name=body.name or body.alias, size=body.provisioned_size, fmt=_enum(body.format),
                    sparse=body.sparse if body.sparse is not None else True, sd=sd,
                    backup=_enum(body.backup) or "none", content_type=_enum(body.content_type) or "data",
                    description=body.description or "")

    async def disk_action(self, request):
        verb = request.path.rsplit("/", 1)[-1]
        getattr(diskactions, verb)(self.engine, request.match_info["id"], _correlation(request))
        return _action_ok()

    async def remove_disk(self, request):
        if "sd" in request.match_info:
            self._sd_disk(request)
        await self.engine.remove_disk(request.match_info["id"])
        return _action_ok()

    async def attachments(self, request):
        vm = self.engine.vm(request.match_info["vm"])
        atts = self.engine.attachments(vm["id"])
        if "id" in request.match_info:
            att = next((a for a in atts if a["id"] == request.match_info["id"]), None)
            if att is None:
                raise not_found(f"disk attachment {request.match_info['id']}")
            return _one(render.attachment(att, self.state.get("disks", att["disk_id"])))
        return _many([render.attachment(a, self.state.get("disks", a["disk_id"])) for a in atts], "disk_attachments")

    async def attach(self, request):
        body = await _body(request)
        if not isinstance(body, t.DiskAttachment) or body.disk is None:
            raise incomplete("DiskAttachment [disk.id, interface] required for add")
        if body.disk.id is None:  # a disk definition: the engine adds the disk to the VM
            self.engine.vm(request.match_info["vm"])
            att = self.engine.add_vm_disk(
                request.match_info["vm"], interface=_enum(body.interface), bootable=bool(body.bootable),
                active=body.active if body.active is not None else True, read_only=bool(body.read_only),
                correlation_id=_correlation(request), disk_id=None, **self._new_disk(request, body.disk))
            return _one(render.attachment(att, self.state.get("disks", att["disk_id"])), 201)
        att = self.engine.attach(
            request.match_info["vm"], disk_id=body.disk.id,
            snapshot_id=body.disk.snapshot.id if body.disk.snapshot is not None else None,
            interface=_enum(body.interface), bootable=bool(body.bootable),
            active=body.active if body.active is not None else True, read_only=bool(body.read_only))
        return _one(render.attachment(att, self.state.get("disks", att["disk_id"])), 201)

    async def detach(self, request):
        self.engine.detach(request.match_info["vm"], request.match_info["id"])
        return _action_ok()

    async def update_attachment(self, request):
        body = await _body(request)
        if not isinstance(body, t.DiskAttachment):
            raise incomplete("DiskAttachment required for update")
        d = body.disk
        att = self.engine.update_attachment(
            request.match_info["vm"], request.match_info["id"], active=body.active, bootable=body.bootable,
            interface=_enum(body.interface), read_only=body.read_only,
            name=(d.alias or d.name) if d is not None else None, description=d.description if d is not None else None,
            size=d.provisioned_size if d is not None else None, correlation_id=_correlation(request))
        return _one(render.attachment(att, self.state.get("disks", att["disk_id"])))

    def _sd_disk(self, request) -> dict:
        sd = self.engine.get("storage_domains", request.match_info["sd"], "storage domain")
        return self.engine.get_of("disks", request.match_info["id"], "disk", "storage_domain_id", sd["id"])

    async def sd_disks(self, request):
        if "id" in request.match_info:
            return _one(self._disk(self._sd_disk(request)))
        sd = self.engine.get("storage_domains", request.match_info["sd"], "storage domain")
        items = search.select([d for d in self.state.table("disks").values() if d["storage_domain_id"] == sd["id"]],
                              request.query.get("search"), {
                                  "name": lambda d: [d["name"]], "alias": lambda d: [d["name"]],
                                  "id": lambda d: [d["id"]], "status": lambda d: [d["status"]]},
                              case_sensitive=_flag(request, "case_sensitive"), max_items=_max(request))
        return _many([self._disk(d) for d in items], "disks")

    async def update_disk(self, request):
        if "sd" in request.match_info:
            self._sd_disk(request)
        body = await _body(request)
        if not isinstance(body, t.Disk):
            raise incomplete("Disk required for update")
        disk = self.engine.update_disk(request.match_info["id"], name=body.alias or body.name,
                                       description=body.description, size=body.provisioned_size,
                                       correlation_id=_correlation(request))
        return _one(self._disk(disk))

    async def update_vm(self, request):
        body = await _body(request)
        if not isinstance(body, t.Vm):
            raise incomplete("Vm required for update")
        topology = body.cpu.topology if body.cpu is not None and body.cpu.topology is not None else None
        vm = self.engine.update_vm(
            request.match_info["vm"], name=body.name, description=body.description, memory=body.memory,
            cpu={"sockets": topology.sockets, "cores": topology.cores, "threads": topology.threads}
            if topology is not None else None,
            os_type=body.os.type if body.os is not None else None, correlation_id=_correlation(request))
        return _one(self._render_vm(vm, False))

    # -- snapshots -----------------------------------------------------------------------------------------------
    def _active_snapshot(self, vm: dict) -> dict:
        return {"id": vm["active_snapshot"], "vm_id": vm["id"], "description": "Active VM", "status": "ok",
                "type": "active", "date": vm.get("created"), "persist_memorystate": False,
                "disks": [d["id"] for d, _ in self.engine.vm_disks(vm["id"])]}

    def _vm_snapshots(self, vm: dict) -> list[dict]:
        snaps = sorted(self.state.find("snapshots", vm_id=vm["id"]), key=lambda s: s["date"])
        return [self._active_snapshot(vm), *snaps]

    def _snapshot(self, request) -> tuple[dict, dict]:
        vm = self.engine.vm(request.match_info["vm"])
        sid = request.match_info["id"]
        snap = next((s for s in self._vm_snapshots(vm) if s["id"] == sid), None)
        if snap is None:
            raise not_found(f"snapshot {sid}")
        return vm, snap

    async def snapshots(self, request):
        all_content = _flag(request, "all_content", "All-Content")
        if "id" in request.match_info:
            vm, snap = self._snapshot(request)
            ovf = (snap.get("ovf") or self.engine.ovf(vm)) if all_content else None
            return _one(render.snapshot(snap, ovf))
        vm = self.engine.vm(request.match_info["vm"])
        return _many([render.snapshot(s, (s.get("ovf") or self.engine.ovf(vm)) if all_content else None)
                      for s in self._vm_snapshots(vm)], "snapshots")

    async def add_snapshot(self, request):
        body = await _body(request)
        if body is None or type(body) is not t.Snapshot:
            raise incomplete("Snapshot [description] required for add")
        disk_ids = None
        if body.disk_attachments:
            disk_ids = [a.disk.id if a.disk is not None else a.id for a in body.disk_attachments]
        snap = self.engine.add_snapshot(request.match_info["vm"], description=body.description, disk_ids=disk_ids,
                                        persist_memorystate=bool(body.persist_memorystate),
                                        correlation_id=_correlation(request))
        return _one(render.snapshot(snap), 202)

    async def remove_snapshot(self, request):
        self.engine.remove_snapshot(request.match_info["vm"], request.match_info["id"], _correlation(request))
        return _action_ok()

    async def restore_snapshot(self, request):
        self.engine.vm(request.match_info["vm"])
        snapshots.restore(self.engine, request.match_info["vm"], request.match_info["id"], _correlation(request))
        return _action_ok()

    async def snapshot_disks(self, request):
        vm, snap = self._snapshot(request)
        disks = [self.state.get("disks", d) for d in snap["disks"] if d in self.state.table("disks")]
        if snap["type"] == "active":
            return _many([self._disk(d) for d in disks], "disks")
        # As the engine: each disk as the snapshot holds it, its image_id and actual_size the snapshot's volume's.
        out = []
        for d in disks:
            vol = next((v for v in snapshots.layers(self.engine, d["id"]) if v["snapshot_id"] == snap["id"]), {})
            obj = render.disk(dict(d, image_id=snap["disk_snapshots"][d["id"]]), vol.get("actual_size") or 0,
                              snapshot_id=snap["id"])
            if vol.get("provisioned_size"):
                obj.provisioned_size = vol["provisioned_size"]
            out.append(obj)
        return _many(out, "disks")

    def _disk_snapshots_of(self, disk_id: str) -> list:
        """The disk's volumes as disk snapshots, base first and the active one last, each with its parent (the
        chain the SDK rebuilds)."""
        disk = self.state.get("disks", disk_id)
        return [render.disk_snapshot(v["id"], disk, v["parent"], status=v["status"], actual_size=v["actual_size"],
                                     provisioned_size=v["provisioned_size"], vm_id=v["vm_id"],
                                     snapshot_id=v["snapshot_id"])
                for v in snapshots.layers(self.engine, disk_id)]

    async def disk_snapshots(self, request):
        self.engine.get("disks", request.match_info["id"], "disk")
        items = self._disk_snapshots_of(request.match_info["id"])
        if not _flag(request, "include_active"):  # the engine's default: the snapshots' volumes only
            items = items[:-1]
        return _many(items, "disk_snapshots")

    async def sd_disk_snapshots(self, request):
        sd = self.engine.get("storage_domains", request.match_info["sd"], "storage domain")
        chains = [self._disk_snapshots_of(d["id"]) for d in self.state.table("disks").values()
                  if d["storage_domain_id"] == sd["id"]]
        if "id" in request.match_info:  # any volume, the active ones included
            hit = next((ds for chain in chains for ds in chain if ds.id == request.match_info["id"]), None)
            if hit is None:
                raise not_found(f"disk snapshot {request.match_info['id']}")
            return _one(hit)
        active = _flag(request, "include_active")
        return _many([ds for chain in chains for ds in (chain if active else chain[:-1])], "disk_snapshots")

    # -- backups and checkpoints --------------------------------------------------------------------------------
    def _backup(self, request) -> dict:
        vm = self.engine.vm(request.match_info["vm"])
        return self.engine.get_of("backups", request.match_info["id"], "backup", "vm_id", vm["id"])

    async def backups(self, request):
        if "id" in request.match_info:
            return _one(render.backup(self._backup(request)))
        vm = self.engine.vm(request.match_info["vm"])
        items = sorted(self.state.find("backups", vm_id=vm["id"]), key=lambda b: b["created"])
        return _many([render.backup(b) for b in items], "backups")

    async def add_backup(self, request):
        body = await _body(request)
        if not isinstance(body, t.Backup):
            raise incomplete("Backup [disks] required for add")
        backup = self.engine.start_backup(
            request.match_info["vm"], backup_id=body.id, disk_ids=[d.id for d in body.disks or [] if d.id],
            from_checkpoint_id=body.from_checkpoint_id, description=body.description,
            require_consistency=_flag(request, "require_consistency"), correlation_id=_correlation(request))
        return _one(render.backup(backup), 201)

    async def finalize_backup(self, request):
        self._backup(request)
        self.engine.finalize_backup(request.match_info["vm"], request.match_info["id"], _correlation(request))
        return _action_ok()

    async def backup_disks(self, request):
        b = self._backup(request)
        disks = [(self.state.get("disks", d), mode) for d, mode in b["disks"].items()
                 if d in self.state.table("disks")]
        return _many([self._disk(d, backup_mode=mode) for d, mode in disks], "disks")

    def _checkpoint(self, request) -> dict:
        vm = self.engine.vm(request.match_info["vm"])
        return self.engine.get_of("checkpoints", request.match_info["id"], "checkpoint", "vm_id", vm["id"])

    async def checkpoints(self, request):
        if "id" in request.match_info:
            return _one(render.checkpoint(self._checkpoint(request)))
        return _many([render.checkpoint(c) for c in self.engine.checkpoints(request.match_info["vm"])],
                     "checkpoints")

    async def checkpoint_disks(self, request):
        cp = self._checkpoint(request)
        return _many([self._disk(self.state.get("disks", d)) for d in cp["disks"] if d in self.state.table("disks")],
                     "disks")

    async def remove_checkpoint(self, request):
        self._checkpoint(request)
        self.engine.remove_checkpoint(request.match_info["vm"], request.match_info["id"])
        return _action_ok()

    # -- image transfers ----------------------------------------------------------------------------------------
    async def transfers(self, request):
        if "id" in request.match_info:
            return _one(render.transfer(self.engine.get("transfers", request.match_info["id"], "image transfer")))
        return _many([render.transfer(x) for x in self.state.table("transfers").values()], "image_transfers")

    async def add_transfer(self, request):
        body = await _body(request)
        if not isinstance(body, t.ImageTransfer):
            raise incomplete("ImageTransfer [disk.id|snapshot.id] required for add")
        disk_id = body.disk.id if body.disk is not None else (body.image.id if body.image is not None else None)
        x = self.engine.add_transfer(
            disk_id=disk_id, snapshot_id=body.snapshot.id if body.snapshot is not None else None,
            backup_id=body.backup.id if body.backup is not None else None,
            direction=_enum(body.direction) or "upload", fmt=_enum(body.format),
            inactivity_timeout=body.inactivity_timeout, timeout_policy=_enum(body.timeout_policy),
            shallow=bool(body.shallow), correlation_id=_correlation(request))
        return _one(render.transfer(x), 201)

    async def transfer_action(self, request):
        verb = request.path.rsplit("/", 1)[-1]
        tid = request.match_info["id"]
        if verb == "finalize":
            self.engine.finalize_transfer(tid)
        elif verb == "cancel":
            self.engine.cancel_transfer(tid)
        elif verb == "extend":
            self.engine.get("transfers", tid, "image transfer")
        else:
            raise failed(f"Cannot {verb} transfer: not supported by this simulator")
        return _action_ok()

    # -- tags -----------------------------------------------------------------------------------------------------
    async def tags(self, request):
        return self._collection(request, "tags", render.tag, "tags", {"name": lambda g: [g["name"]]})

    async def add_tag(self, request):
        body = await _body(request)
        if not isinstance(body, t.Tag):
            raise incomplete("Tag [name] required for add")
        tag = self.engine.add_tag(body.name, body.description, body.parent.id if body.parent is not None else None)
        return _one(render.tag(tag), 201)

    async def update_tag(self, request):
        body = await _body(request)
        if not isinstance(body, t.Tag):
            raise incomplete("Tag required for update")
        parent = (body.parent.id or body.parent.name) if body.parent is not None else None
        tag = self.engine.update_tag(request.match_info["id"], body.name, body.description, parent)
        return _one(render.tag(tag))

    async def remove_tag(self, request):
        self.engine.remove_tag(request.match_info["id"])
        return _action_ok()

    async def vm_tags(self, request):
        vm = self.engine.vm(request.match_info["vm"])
        tags = [self.state.get("tags", g) for g in vm["tags"] if g in self.state.table("tags")]
        if "id" in request.match_info:
            hit = next((g for g in tags if g["id"] == request.match_info["id"]), None)
            if hit is None:
                raise not_found(f"tag {request.match_info['id']}")
            return _one(render.tag(hit))
        return _many([render.tag(g) for g in tags], "tags")

    async def assign_tag(self, request):
        body = await _body(request)
        if not isinstance(body, t.Tag):
            raise incomplete("Tag [id|name] required for add")
        tag = self.engine.assign_tag(request.match_info["vm"], body.id, body.name)
        return _one(render.tag(tag), 201)

    async def unassign_tag(self, request):
        self.engine.unassign_tag(request.match_info["vm"], request.match_info["id"])
        return _action_ok()

    # -- events and jobs ------------------------------------------------------------------------------------------
    async def events(self, request):
        items = list(reversed(self.state.data["events"]))           # newest first, as the engine does
        if "id" in request.match_info:
            hit = next((e for e in items if e["id"] == request.match_info["id"]), None)
            if hit is None:
                raise not_found(f"event {request.match_info['id']}")
            return _one(render.event(hit))
        if request.query.get("from", "").isdigit():
            start = int(request.query["from"])
            items = [e for e in items if int(e["id"]) > start]
        items = search.select(items, request.query.get("search"), {
            "severity": lambda e: [{"normal": 1, "warning": 2, "error": 3, "alert": 4}.get(e["severity"], 0)],
            "correlation_id": lambda e: [e.get("correlation_id") or ""], "code": lambda e: [e["code"]],
            "vm.name": lambda e: [self.state.table("vms").get(e.get("vm_id") or "", {}).get("name", "")]},
            case_sensitive=_flag(request, "case_sensitive"), max_items=_max(request),
            text=lambda e: f"{e['description']} {e.get('correlation_id') or ''}")
        return _many([render.event(e) for e in items], "events")

    async def add_event(self, request):
        body = await _body(request)
        if not isinstance(body, t.Event) or not body.description or body.origin is None or body.severity is None \
                or body.custom_id is None:
            raise incomplete("Event [origin, severity, custom_id, description] required for add")
        ev = self.state.event(body.code or 0, body.description, severity=_enum(body.severity),
                              vm_id=body.vm.id if body.vm is not None else None, origin=body.origin,
                              custom_id=body.custom_id, correlation_id=_correlation(request))
        return _one(render.event(ev), 201)

    async def jobs(self, request):
        return self._collection(request, "jobs", render.job, "jobs", {
            "correlation_id": lambda j: [j.get("correlation_id") or ""], "status": lambda j: [j["status"]],
            "description": lambda j: [j["description"]]})

