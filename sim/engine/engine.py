"""What the engine does, apart from HTTP: validations, phase machines and the calls into the data plane.

Every command validates synchronously (raising ApiError as the engine would answer), records the entity, and runs
the slow part as a background task that moves the entity through its phases, as the real engine's async commands
do. Storage work runs in worker threads; a per-disk lock in the DiskStore serializes it.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.parse
import uuid
from dataclasses import dataclass, field

from .. import procs
from ..dataplane.plane import DataPlane
from ..dataplane.storage import DiskStore
from . import ova, ovf, snapshots, transitions
from .errors import conflict, failed, incomplete, not_found
from .state import ROOT_TAG_ID, NotFound, State, new_id, now

log = logging.getLogger(__name__)

STEP = 0.2                       # how long a phase lasts at least: clients must be able to see it
BACKUP_RUNNING = ("initializing", "starting", "ready", "finalizing")
TRANSFER_DONE = ("finished_success", "finished_failure", "finished_cleanup", "cancelled")


def unreachable(url: str) -> str:
    """`url` on a loopback port nothing listens on."""
    parts = urllib.parse.urlsplit(url)
    return parts._replace(netloc=f"{parts.hostname}:{procs.free_port()}").geturl()


@dataclass
class Faults:
    """Faults armed on demand by tests and rehearsals."""
    transfer_fail: int = 0
    backup_stall: int = 0
    backup_finalize_fail: int = 0  # the next finalized backups end failed, their checkpoint removed
    freeze_fail: int = 0  # the guest agent of the next frozen running VMs (backup or snapshot) cannot freeze them
    snapshot_remove_fail: int = 0  # the next snapshot removals fail on the host: the snapshot stays, ok again
    snapshot_hold: float = 0.0  # the next snapshot creation or removal stays locked this many seconds longer
    checkpoint_remove_fail: int = 0  # the next checkpoint removals fail on the host: the checkpoint stays
    engine_500: int = 0
    engine_drop: int = 0
    answer_lost: int = 0  # the next API POSTs are carried out, their answers lost (the connection dropped)
    host_unreachable: int = 0  # the next transfers' host URL cannot be reached from the client: only the proxy serves
    stalled_backups: set = field(default_factory=set)

    def take(self, name: str) -> bool:
        if getattr(self, name) > 0:
            setattr(self, name, getattr(self, name) - 1)
            return True
        return False

    def take_hold(self) -> float:
        hold, self.snapshot_hold = self.snapshot_hold, 0.0
        return hold


class Engine:
    def __init__(self, state: State, store: DiskStore, plane: DataPlane) -> None:
        self.state = state
        self.store = store
        self.plane = plane
        self.faults = Faults()
        self._tasks: set[asyncio.Task] = set()
        self._vm_locks: dict[str, asyncio.Lock] = {}
        self.state_delay = transitions.DEFAULT_STATE_DELAY  # serve --state-delay
        self.power_moves: dict[str, int] = {}  # VM id -> its latest power transition (transitions.py)

    # -- plumbing -------------------------------------------------------------------------------------------
    def spawn(self, coro, what: str) -> None:
        async def guarded():
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background %s failed", what)
        task = asyncio.get_running_loop().create_task(guarded(), name=what)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # Transfers still open when the engine stops end as the engine would find them after a restart: failed.
        for x in self.state.table("transfers").values():
            if x["phase"] not in TRANSFER_DONE:
                with contextlib.suppress(Exception):
                    await self.plane.close_ticket(x["ticket_id"])
                x.update(phase="finished_failure", transfer_url=None, proxy_url=None)
                self._unlock_disk_after_transfer(x)
        self.state.save()

    def hold(self) -> float:
        """How long a transitional state (a locked snapshot or disk) lasts at least: --state-delay, never under
        STEP."""
        return max(STEP, self.state_delay)

    def vm_lock(self, vm_id: str) -> asyncio.Lock:
        return self._vm_locks.setdefault(vm_id, asyncio.Lock())

    def get(self, table: str, entity_id: str, what: str | None = None) -> dict:
        try:
            return self.state.get(table, entity_id)
        except NotFound:
            raise not_found(f"{what or table[:-1]} {entity_id}") from None

    def get_of(self, table: str, entity_id: str, what: str, parent_field: str, parent_id: str) -> dict:
        """An entity reached under its parent (a VM's backup, a storage domain's disk): 404, as for an unknown id,
        when it belongs to another."""
        entity = self.get(table, entity_id, what)
        if entity[parent_field] != parent_id:
            raise not_found(f"{what} {entity_id}")
        return entity

    def vm(self, vm_id: str) -> dict:
        return self.get("vms", vm_id, "VM")

    def host_id(self) -> str:
        return next(iter(self.state.table("hosts")))

    def attachments(self, vm_id: str) -> list[dict]:
        return [a for a in self.state.table("attachments").values() if a["vm_id"] == vm_id]

    def vm_disks(self, vm_id: str) -> list[tuple[dict, dict]]:
        return [(self.state.get("disks", a["disk_id"]), a) for a in self.attachments(vm_id)
                if not a.get("snapshot_id")]

    def running_backup(self, vm_id: str) -> dict | None:
        return next((b for b in self.state.table("backups").values()
                     if b["vm_id"] == vm_id and b["phase"] in BACKUP_RUNNING), None)

    def event(self, *args, **kwargs) -> None:
        self.state.event(*args, **kwargs)
        self.state.save()

    def ovf(self, vm: dict) -> str:
        cluster = self.state.table("clusters").get(vm["cluster_id"], {"name": ""})
        return ovf.write(vm, cluster["name"], self.vm_disks(vm["id"]))

    def start_job(self, description: str, correlation_id: str | None) -> dict:
        return self.state.put("jobs", {"id": new_id(), "description": description, "status": "started",
                                       "start": now(), "correlation_id": correlation_id})

    def end_job(self, job: dict, ok: bool) -> None:
        job.update(status="finished" if ok else "failed", end=now())

    # -- VMs ------------------------------------------------------------------------------------------------
    def cluster_of(self, ref_id: str | None, ref_name: str | None) -> dict:
        if not ref_id and not ref_name:
            raise incomplete("Vm [cluster.id|name] required for add")
        try:
            return self.state.by_name("clusters", ref_id or ref_name)
        except NotFound:
            raise not_found(f"cluster {ref_id or ref_name}") from None

    def add_vm(self, *, name: str | None, cluster: dict, configuration: str | None, regenerate_ids: bool,
               memory: int | None, cpu: dict | None, os_type: str | None, description: str | None,
               correlation_id: str | None, configuration_type: str = "ovf") -> dict:
        attach: list[dict] = []
        fields = {"memory": 1 << 30, "cpu": {"sockets": 1, "cores": 1, "threads": 1}, "os": "other", "nics": [],
                  "description": ""}
        vm_id = new_id()
        if configuration is not None:
            try:
                parsed = (ova.read if configuration_type == "ova" else ovf.read)(configuration)
            except ovf.OvfError as e:
                raise failed(f"Cannot import VM. Failed to parse the OVF configuration: {e}") from None
            fields.update({k: parsed[k] for k in ("memory", "cpu", "os", "nics", "description")})
            name = name or parsed["name"]
            if not regenerate_ids and parsed["vm_id"]:  # like the engine: the VM keeps the OVF's id
                if parsed["vm_id"] in self.state.table("vms"):
                    raise conflict("Cannot add VM. VM with the same identifier already exists.")
                vm_id = parsed["vm_id"]
            # Like the engine: disks the OVF names that exist and are floating get attached; a disk another VM
            # holds stays where it is (the new VM is created without it).
            attach = [d for d in parsed["disks"] if d["disk_id"] in self.state.table("disks")
                      and not any(not a.get("snapshot_id")
                                  for a in self.state.find("attachments", disk_id=d["disk_id"]))]
        if not name:
            raise incomplete("Vm [name] required for add")
        if any(v["name"] == name for v in self.state.table("vms").values()):
            raise conflict(f"Cannot add VM. The VM name is already in use: {name}")
        fields.update({k: v for k, v in (("memory", memory), ("cpu", cpu), ("os", os_type),
                                          ("description", description)) if v})
        for n in fields["nics"]:
            n["id"] = new_id()
            n.setdefault("mac", _mac())
        vm = self.state.put("vms", dict(fields, id=vm_id, name=name, cluster_id=cluster["id"], status="down",
                                        host_id=None, guest_agent=False, tags=[], created=now(),
                                        active_snapshot=new_id()))
        for d in attach:
            self.state.put("attachments", {"id": d["disk_id"], "vm_id": vm_id, "disk_id": d["disk_id"],
                                           "interface": d["interface"], "bootable": d["bootable"], "active": True})
        self.event(34, f"VM {name} was created by admin@internal-authz.", vm_id=vm_id, correlation_id=correlation_id)
        return vm

    async def remove_vm(self, vm_id: str, detach_only: bool = False) -> None:
        vm = self.vm(vm_id)
        if vm["status"] not in ("down", "image_locked"):
            raise conflict(f"Cannot remove VM. VM {vm['name']} is running")
        snapshots.refuse_while_locked(self, vm, "remove", "VM")
        if self.running_backup(vm_id):
            raise conflict(f"Cannot remove VM. VM {vm['name']} is during a backup operation")
        disks = self.vm_disks(vm_id)
        locked = [d["name"] for d, _ in disks if d["status"] == "locked"]
        if locked:
            raise conflict(f"Cannot remove VM. Disks {', '.join(locked)} are locked")
        for a in self.attachments(vm_id):
            self.state.delete("attachments", a["id"])
        if not detach_only:
            for disk, _ in disks:
                self.state.delete("disks", disk["id"])
                await asyncio.to_thread(self.store.remove, disk["id"])
        for table in ("snapshots", "checkpoints", "backups"):
            for e in self.state.find(table, vm_id=vm_id):
                self.state.delete(table, e["id"])
        self.state.delete("vms", vm_id)
        self.event(113, f"VM {vm['name']} was successfully removed.", vm_id=vm_id)

    def set_power(self, vm_id: str, action: str, correlation_id: str | None) -> None:
        """start, stop, shutdown: through the engine's transitional states (transitions.py)."""
        transitions.power(self, vm_id, action, correlation_id)
        self.state.save()

    # -- disks ----------------------------------------------------------------------------------------------
    def storage_domain(self, ref_id: str | None, ref_name: str | None) -> dict:
        if not ref_id and not ref_name:
            raise incomplete("Disk [storage_domains] required for add")
        try:
            return self.state.by_name("storage_domains", ref_id or ref_name)
        except NotFound:
            raise not_found(f"storage domain {ref_id or ref_name}") from None

    def add_disk(self, *, disk_id: str | None, name: str | None, size: int | None, fmt: str, sparse: bool,
                 sd: dict, backup: str, content_type: str, description: str, correlation_id: str | None,
                 seed: list | None = None) -> dict:
        if not size:
            raise incomplete("Disk [provisioned_size] required for add")
        if disk_id and disk_id in self.state.table("disks"):
            raise conflict(f"Cannot add Virtual Disk. Disk with id {disk_id} already exists")
        if backup == "incremental" and fmt != "cow":
            raise failed("Cannot add Virtual Disk. Incremental backup is supported only for QCOW2 disks")
        disk = self.state.put("disks", {
            "id": disk_id or new_id(), "image_id": new_id(), "name": name or f"disk-{uuid.uuid4().hex[:6]}",
            "provisioned_size": size, "format": fmt, "sparse": sparse, "storage_domain_id": sd["id"],
            "backup": backup, "content_type": content_type, "description": description, "status": "locked"})
        self.state.save()

        async def create():
            job = self.start_job(f"Adding Disk {disk['name']}", correlation_id)
            try:
                await asyncio.to_thread(self.store.create, disk["id"], size, fmt)
                if seed:
                    await asyncio.to_thread(self.store.seed, disk["id"], seed)
                await asyncio.sleep(STEP)
                disk["status"] = "ok"
                self.end_job(job, True)
                self.event(2021, f"The disk {disk['name']} was successfully added.", correlation_id=correlation_id)
            except Exception as e:
                disk["status"] = "illegal"
                self.end_job(job, False)
                self.event(2022, f"Add-Disk operation failed to complete: {e}", severity="error")
                raise
        self.spawn(create(), f"create disk {disk['name']}")
        return disk

    async def remove_disk(self, disk_id: str) -> None:
        disk = self.get("disks", disk_id, "disk")
        if disk["status"] == "locked":
            raise conflict(f"Cannot remove Virtual Disk. Disk {disk['name']} is locked. Please try again in a few "
                           "minutes")
        for a in self.state.find("attachments", disk_id=disk_id):
            if self.vm(a["vm_id"])["status"] == "up" and a["active"] and not a.get("snapshot_id"):
                raise conflict(f"Cannot remove Virtual Disk. Disk {disk['name']} is attached to a running VM")
        for a in self.state.find("attachments", disk_id=disk_id):
            self.state.delete("attachments", a["id"])
        self.state.delete("disks", disk_id)
        await asyncio.to_thread(self.store.remove, disk_id)
        self.event(2014, f"Disk {disk['name']} was successfully removed.")

    def attach(self, vm_id: str, *, disk_id: str | None, snapshot_id: str | None, interface: str | None,
               bootable: bool, active: bool, read_only: bool) -> dict:
        vm = self.vm(vm_id)
        if not disk_id:
            raise incomplete("DiskAttachment [disk.id] required for add")
        disk = self.get("disks", disk_id, "disk")
        if not interface:
            raise incomplete("DiskAttachment [interface] required for add")
        if snapshot_id:
            snap = self.get("snapshots", snapshot_id, "snapshot")
            if disk_id not in snap["disks"]:
                raise failed(f"Cannot attach Virtual Disk. Disk {disk['name']} is not part of snapshot "
                             f"{snap['description']}")
            key = f"{disk_id}:{snapshot_id}"
        else:
            if disk["status"] == "locked":
                raise conflict(f"Cannot attach Virtual Disk. Disk {disk['name']} is locked")
            if any(not a.get("snapshot_id") for a in self.state.find("attachments", disk_id=disk_id)):
                raise conflict(f"Cannot attach Virtual Disk. Disk {disk['name']} is already attached to a VM")
            key = disk_id
        if any(a["vm_id"] == vm_id and a["id"] == key for a in self.state.table("attachments").values()):
            raise conflict(f"Cannot attach Virtual Disk. The disk is already attached to VM {vm['name']}")
        att = self.state.put("attachments", {"id": key, "vm_id": vm_id, "disk_id": disk_id, "interface": interface,
                                             "bootable": bootable, "active": active, "snapshot_id": snapshot_id,
                                             "read_only": read_only or bool(snapshot_id)})
        if snapshot_id:
            self.state.get("snapshots", snapshot_id).setdefault("attached_to", []).append(vm_id)
        self.event(2016, f"Disk {disk['name']} was successfully attached to VM {vm['name']}", vm_id=vm_id)
        return att

    def add_vm_disk(self, vm_id: str, *, interface: str | None, bootable: bool, active: bool, read_only: bool,
                    correlation_id: str | None, **disk_fields) -> dict:
        """POST /vms/{id}/diskattachments with a disk definition and no disk id: the engine's AddDisk with the VM,
        which creates the disk (locked until its image exists) and attaches it at once."""
        vm = self.vm(vm_id)
        if not interface:
            raise incomplete("DiskAttachment [interface] required for add")
        if bootable and any(a["bootable"] for a in self.attachments(vm_id) if not a.get("snapshot_id")):
            raise conflict(f"Cannot add Virtual Disk. VM {vm['name']} already has a bootable disk")
        if not disk_fields.get("name"):
            n = len([a for a in self.attachments(vm_id) if not a.get("snapshot_id")]) + 1
            disk_fields["name"] = f"{vm['name']}_Disk{n}"
        disk = self.add_disk(correlation_id=correlation_id, **disk_fields)
        att = self.state.put("attachments", {"id": disk["id"], "vm_id": vm_id, "disk_id": disk["id"],
                                             "interface": interface, "bootable": bootable, "active": active,
                                             "snapshot_id": None, "read_only": read_only})
        self.state.save()
        return att

    def detach(self, vm_id: str, attachment_id: str) -> None:
        att = next((a for a in self.attachments(vm_id) if a["id"] == attachment_id or
                    (a["disk_id"] == attachment_id and a.get("snapshot_id"))), None)
        if att is None:
            raise not_found(f"disk attachment {attachment_id}")
        disk = self.state.get("disks", att["disk_id"])
        if not att.get("snapshot_id") and disk["status"] == "locked":
            raise conflict(f"Cannot detach Virtual Disk. Disk {disk['name']} is locked")
        self.state.delete("attachments", att["id"])
        if att.get("snapshot_id") and att["snapshot_id"] in self.state.table("snapshots"):
            snap = self.state.get("snapshots", att["snapshot_id"])
            with contextlib.suppress(ValueError):
                snap.get("attached_to", []).remove(vm_id)
        self.event(2018, f"Disk {disk['name']} was successfully detached from VM {self.vm(vm_id)['name']}",
                   vm_id=vm_id)

    # -- updates (the engine's UpdateDisk / HotPlug / HotUnPlug / UpdateVm commands) ------------------------
    def find_attachment(self, vm_id: str, attachment_id: str) -> dict:
        att = next((a for a in self.attachments(vm_id) if a["id"] == attachment_id or
                    (a["disk_id"] == attachment_id and a.get("snapshot_id"))), None)
        if att is None:
            raise not_found(f"disk attachment {attachment_id}")
        return att

    def update_disk(self, disk_id: str, *, name: str | None = None, description: str | None = None,
                    size: int | None = None, attachment: dict | None = None,
                    correlation_id: str | None = None) -> dict:
        """Alias and description change at once; a larger provisioned size extends the image (the disk is locked
        until it is done, as the engine's EXTEND_DISK phase does). Refusals follow UpdateDiskCommand.validate."""
        disk = self.get("disks", disk_id, "disk")
        if disk["status"] == "locked":
            raise conflict(f"Cannot edit Virtual Disk. Disk {disk['name']} is locked. Please try again in a few "
                           "minutes")
        resize = size is not None and size != disk["provisioned_size"]
        if resize:
            if attachment is not None and attachment.get("read_only"):
                raise failed("Cannot edit Virtual Disk. Cannot resize read-only disk")
            if attachment is not None and attachment.get("snapshot_id"):
                raise failed("Cannot edit Virtual Disk. Cannot resize disk snapshot")
            if size < disk["provisioned_size"]:
                raise failed("Cannot edit Virtual Disk. Requested disk size is too small")
            for a in self.state.find("attachments", disk_id=disk_id):
                vm = self.vm(a["vm_id"])
                if a["active"] and vm["status"] not in ("up", "down", "paused"):
                    raise conflict(f"Cannot edit Virtual Disk. VM {vm['name']} is {vm['status']}")
        if name:
            disk["name"] = name
        if description is not None:
            disk["description"] = description
        if attachment is not None:
            self.event(88, f"VM {self.vm(attachment['vm_id'])['name']} {disk['name']} disk was updated by "
                           "admin@internal-authz.", vm_id=attachment["vm_id"], correlation_id=correlation_id)
        if resize:
            disk["status"] = "locked"

            async def extend():
                ok = False
                try:
                    await asyncio.to_thread(self.store.extend, disk_id, size)
                    disk["provisioned_size"] = size
                    ok = True
                finally:
                    await asyncio.sleep(STEP)
                    disk["status"] = "ok"
                    if ok:
                        self.event(371, f"Size of the disk '{disk['name']}' was successfully updated to "
                                        f"{size / (1 << 30):g} GB by admin@internal-authz.",
                                   correlation_id=correlation_id)
                    else:
                        self.event(370, f"Failed to extend size of the disk '{disk['name']}' to "
                                        f"{size / (1 << 30):g} GB, User: admin@internal-authz.", severity="error",
                                   correlation_id=correlation_id)
            self.spawn(extend(), f"extend disk {disk['name']}")
        self.state.save()
        return disk

    def update_attachment(self, vm_id: str, attachment_id: str, *, active: bool | None, bootable: bool | None,
                          interface: str | None, read_only: bool | None, name: str | None, description: str | None,
                          size: int | None, correlation_id: str | None) -> dict:
        """PUT on a disk attachment: `active` plugs or unplugs the disk (HotPlugDiskToVm / HotUnPlugDiskFromVm),
        the rest is UpdateDisk with the VM: bootable, interface and read-only only while the VM is down."""
        vm = self.vm(vm_id)
        att = self.find_attachment(vm_id, attachment_id)
        disk = self.state.get("disks", att["disk_id"])
        if disk["status"] == "locked" and not att.get("snapshot_id"):
            raise conflict(f"Cannot edit Virtual Disk. Disk {disk['name']} is locked. Please try again in a few "
                           "minutes")
        device = {k: v for k, v in (("bootable", bootable), ("interface", interface), ("read_only", read_only))
                  if v is not None and v != att.get(k, False if k != "interface" else None)}
        if device and vm["status"] != "down":
            raise conflict(f"Cannot edit Virtual Disk. VM {vm['name']} is not down")
        if device.get("bootable") and any(a["bootable"] for a in self.attachments(vm_id) if a is not att
                                           and not a.get("snapshot_id")):
            raise conflict(f"Cannot edit Virtual Disk. VM {vm['name']} already has a bootable disk")
        if name or description is not None or size is not None:
            if att.get("snapshot_id"):
                raise failed("Cannot edit Virtual Disk. A disk snapshot attached to a VM cannot be edited")
            self.update_disk(disk["id"], name=name, description=description, size=size, attachment=att,
                             correlation_id=correlation_id)
        att.update(device)
        if active is not None and active != att["active"]:
            att["active"] = active
            verb = "plugged" if active else "unplugged"
            self.event(2034 if active else 2036, f"VM {vm['name']} disk {disk['name']} was {verb} by "
                                                 "admin@internal-authz.", vm_id=vm_id, correlation_id=correlation_id)
        self.state.save()
        return att

    def update_vm(self, vm_id: str, *, name: str | None, description: str | None, memory: int | None,
                  cpu: dict | None, os_type: str | None, correlation_id: str | None) -> dict:
        vm = self.vm(vm_id)
        if name and name != vm["name"]:
            if any(v["name"] == name for v in self.state.table("vms").values()):
                raise conflict("Cannot edit VM. The VM name is already in use")
        if memory is not None and memory <= 0:
            raise failed("Cannot edit VM. Memory size must be positive")
        if any(v is not None and v <= 0 for v in (cpu or {}).values()):
            raise failed("Cannot edit VM. The CPU topology must be positive")
        for key, value in (("name", name), ("description", description), ("memory", memory), ("os", os_type)):
            if value is not None and (value or key == "description"):
                vm[key] = value
        if cpu:
            vm["cpu"] = dict(vm["cpu"], **{k: v for k, v in cpu.items() if v is not None})
        self.event(35, f"VM {vm['name']} configuration was updated by admin@internal-authz.", vm_id=vm_id,
                   correlation_id=correlation_id)
        return vm

    # -- snapshots ------------------------------------------------------------------------------------------
    def add_snapshot(self, vm_id: str, *, description: str | None, disk_ids: list[str] | None,
                     persist_memorystate: bool, correlation_id: str | None) -> dict:
        vm = self.vm(vm_id)
        if not description:
            raise incomplete("Snapshot [description] required for add")
        snapshots.refuse_while_locked(self, vm, "create", "Snapshot")
        if self.running_backup(vm_id):
            raise conflict(f"Cannot create Snapshot. VM {vm['name']} is during a backup operation")
        disks = [d for d, _ in self.vm_disks(vm_id)]
        if disk_ids is not None:
            unknown = set(disk_ids) - {d["id"] for d in disks}
            if unknown:
                raise failed(f"Cannot create Snapshot. Disks {sorted(unknown)} are not attached to the VM")
            disks = [d for d in disks if d["id"] in disk_ids]
        snapshots.refuse_locked_disks(disks, "create", "Snapshot")
        for d in disks:
            d["status"] = "locked"
        snap = self.state.put("snapshots", {
            "id": new_id(), "vm_id": vm_id, "description": description, "status": "locked", "type": "regular",
            "op": "create", "date": now(), "persist_memorystate": persist_memorystate and vm["status"] == "up",
            "disks": [d["id"] for d in disks], "disk_snapshots": {d["id"]: d["image_id"] for d in disks},
            "ovf": self.ovf(vm)})
        for d in disks:  # the snapshot keeps the frozen volume's id; the new active volume gets a new one
            d["image_id"] = new_id()
        self.event(45, f"Snapshot '{description}' creation for VM '{vm['name']}' was initiated by "
                       "admin@internal-authz.", vm_id=vm_id, correlation_id=correlation_id)
        self.spawn(self._take_snapshot(vm, snap, disks, correlation_id), f"snapshot {description}")
        return snap

    async def _take_snapshot(self, vm: dict, snap: dict, disks: list[dict], correlation_id: str | None) -> None:
        job = self.start_job(f"Creating VM Snapshot {snap['description']} for VM {vm['name']}", correlation_id)
        quiesce = vm["status"] == "up" and vm.get("guest_agent")
        hold = self.faults.take_hold()
        ok = False
        async with self.vm_lock(vm["id"]):
            try:
                if quiesce:
                    self.event(10900, f"Freeze of guest filesystems on VM {vm['name']} was initiated.",
                               vm_id=vm["id"], correlation_id=correlation_id)
                    if self.faults.take("freeze_fail"):
                        # LiveSnapshotAllowInconsistent (the default): the snapshot is taken without the freeze.
                        quiesce = False
                        self.event(10901, f"Failed to freeze guest filesystems on VM {vm['name']}. Note that using "
                                          "the created snapshot might cause data inconsistency.", severity="warning",
                                   vm_id=vm["id"], correlation_id=correlation_id)
                for d in disks:
                    await asyncio.to_thread(self.store.create_snapshot, d["id"], snap["id"])
                ok = True
            finally:
                if quiesce:
                    self.event(10902, f"Thaw of guest filesystems on VM {vm['name']} was initiated.",
                               vm_id=vm["id"], correlation_id=correlation_id)
                await asyncio.sleep(self.hold() + hold)
                for d in disks:
                    d["status"] = "ok"
                if not ok:
                    snapshots.creation_failed(self, snap)
                snap.update(status="ok" if ok else "broken", op=None)
                self.end_job(job, ok)
                self.event(68 if ok else 69, f"Snapshot '{snap['description']}' creation for VM '{vm['name']}' "
                           f"has been {'completed' if ok else 'failed'}.", vm_id=vm["id"],
                           severity="normal" if ok else "error", correlation_id=correlation_id)

    def remove_snapshot(self, vm_id: str, snapshot_id: str, correlation_id: str | None) -> None:
        vm = self.vm(vm_id)
        snap = self.get("snapshots", snapshot_id, "snapshot")
        if snap["vm_id"] != vm_id:
            raise not_found(f"snapshot {snapshot_id}")
        snapshots.refuse_while_locked(self, vm, "remove", "Snapshot")
        if snap.get("attached_to"):
            raise conflict("Cannot remove Snapshot. Its disks are attached to another VM")
        if self.running_backup(vm_id):
            raise conflict(f"Cannot remove Snapshot. VM {vm['name']} is during a backup operation")
        if any(x["snapshot_id"] in snap["disk_snapshots"].values() and x["phase"] not in TRANSFER_DONE
               for x in self.state.table("transfers").values()):
            raise conflict("Cannot remove Snapshot. A transfer of one of its disks is running")
        disks = [self.state.get("disks", d) for d in snap["disks"] if d in self.state.table("disks")]
        snapshots.refuse_locked_disks(disks, "remove", "Snapshot")
        if snap["status"] == "locked":  # being removed (a snapshot without disks: no disk to find locked)
            raise conflict(f"Cannot remove Snapshot. Snapshot {snap['description']} is locked")
        if snap.get("cloning"):  # a VM is being made from it
            raise conflict("Cannot remove Snapshot. Related operation is currently in progress. Please try again "
                           "later.")
        snap.update(status="locked", op="remove")
        for d in disks:  # the merge locks the chain's images
            d["status"] = "locked"
        fail, hold = self.faults.take("snapshot_remove_fail"), self.faults.take_hold()
        self.event(342, f"Snapshot '{snap['description']}' deletion for VM '{vm['name']}' was initiated.",
                   vm_id=vm_id, correlation_id=correlation_id)
        self.spawn(self._merge_snapshot(vm, snap, disks, fail, hold, correlation_id),
                   f"remove snapshot {snap['description']}")

    async def _merge_snapshot(self, vm: dict, snap: dict, disks: list[dict], fail: bool, hold: float,
                              correlation_id: str | None) -> None:
        job = self.start_job(f"Removing Snapshot {snap['description']} of VM {vm['name']}", correlation_id)
        ok = False
        try:
            async with self.vm_lock(vm["id"]):
                await asyncio.sleep(self.hold() + hold)
                if fail:
                    raise snapshots.MergeFailed("the host failed to merge the volumes (injected fault)")
                for d in disks:
                    await asyncio.to_thread(self.store.remove_snapshot, d["id"], snap["id"])
                    snapshots.merged(self, snap, d["id"])
                    # A disk merged leaves the snapshot even when the next one fails (the engine's partial removal).
                    snap["disks"].remove(d["id"])
                    del snap["disk_snapshots"][d["id"]]
            ok = True
        except Exception as e:
            if not isinstance(e, snapshots.MergeFailed):
                log.exception("removing snapshot %s of VM %s failed", snap["id"], vm["name"])
        finally:
            for d in disks:
                d["status"] = "ok"
            self.end_job(job, ok)
            if ok:
                self.state.delete("snapshots", snap["id"])
                self.event(356, f"Snapshot '{snap['description']}' deletion for VM '{vm['name']}' has been "
                                "completed.", vm_id=vm["id"], correlation_id=correlation_id)
            else:  # the snapshot stays, usable again (RemoveSnapshotCommand.endVmCommand sets it OK)
                snap.update(status="ok", op=None)
                self.event(357, f"Failed to delete snapshot '{snap['description']}' for VM '{vm['name']}'.",
                           severity="error", vm_id=vm["id"], correlation_id=correlation_id)

    # -- checkpoints ----------------------------------------------------------------------------------------
    def checkpoints(self, vm_id: str) -> list[dict]:
        self.vm(vm_id)
        return sorted(self.state.find("checkpoints", vm_id=vm_id), key=lambda c: c["created"])

    def remove_checkpoint(self, vm_id: str, checkpoint_id: str) -> None:
        vm = self.vm(vm_id)
        cp = self.get("checkpoints", checkpoint_id, "checkpoint")
        if cp["vm_id"] != vm_id:
            raise not_found(f"checkpoint {checkpoint_id}")
        if self.running_backup(vm_id):
            raise conflict(f"Cannot remove checkpoint. VM {vm['name']} is during a backup operation")
        if self.faults.take("checkpoint_remove_fail"):
            # As the engine when the host fails to delete the bitmaps: its audit event, and a failed action.
            self.event(10798, f"Failed to delete checkpoint {checkpoint_id} for VM {vm['name']}.", severity="error",
                       vm_id=vm_id)
            raise failed(f"Failed to delete checkpoint {checkpoint_id}: the host could not remove its bitmaps")

        async def drop():
            async with self.vm_lock(vm_id):
                for disk_id in cp["disks"]:
                    if disk_id in self.state.table("disks"):
                        await asyncio.to_thread(self.store.remove_checkpoint, disk_id, checkpoint_id)
                for child in self.state.find("checkpoints", vm_id=vm_id, parent_id=checkpoint_id):
                    child["parent_id"] = cp.get("parent_id")
                self.state.delete("checkpoints", checkpoint_id)
                self.event(10797, f"Checkpoint {checkpoint_id} for VM {vm['name']} has been deleted.", vm_id=vm_id)
        self.spawn(drop(), f"remove checkpoint {checkpoint_id}")

    def drop_bitmaps(self, vm_id: str) -> None:
        """Fault injection: the VM's bitmaps are gone (as after a host crash); the checkpoints turn invalid."""
        for disk, _ in self.vm_disks(vm_id):
            self.store.drop_checkpoints(disk["id"])
        for cp in self.state.find("checkpoints", vm_id=vm_id):
            cp["state"] = "invalid"
        self.state.save()

    # -- backups --------------------------------------------------------------------------------------------
    def start_backup(self, vm_id: str, *, backup_id: str | None, disk_ids: list[str] | None,
                     from_checkpoint_id: str | None, description: str | None, correlation_id: str | None,
                     require_consistency: bool = False) -> dict:
        vm = self.vm(vm_id)
        if vm["status"] not in ("up", "down"):
            raise conflict(f"Cannot backup VM. VM {vm['name']} status is {vm['status']}")
        if not disk_ids:
            raise incomplete("Backup [disks] required for add")
        snapshots.refuse_while_locked(self, vm, "backup", "VM")
        if self.running_backup(vm_id):
            raise conflict(f"Cannot backup VM. VM {vm['name']} is during a backup operation")
        if backup_id and backup_id in self.state.table("backups"):
            raise conflict(f"Cannot backup VM. Backup {backup_id} already exists")
        attached = {d["id"]: d for d, _ in self.vm_disks(vm_id)}
        missing = [d for d in disk_ids if d not in attached]
        if missing:
            raise failed(f"Cannot backup VM. Disks {missing} are not attached to VM {vm['name']}")
        disks = [attached[d] for d in disk_ids]
        locked = [d["name"] for d in disks if d["status"] != "ok"]
        if locked:
            raise conflict(f"Cannot backup VM. Disks {', '.join(locked)} are locked")
        parent = None
        if from_checkpoint_id:
            cp = self.state.table("checkpoints").get(from_checkpoint_id)
            if cp is None or cp["vm_id"] != vm_id:
                raise failed(f"Cannot backup VM. Checkpoint {from_checkpoint_id} does not exist")
            if cp["state"] == "invalid":
                raise failed(f"Cannot backup VM. Checkpoint {from_checkpoint_id} is invalid")
        chain = self.checkpoints(vm_id)
        parent = chain[-1]["id"] if chain else None
        modes = {}
        for d in disks:
            incremental = (from_checkpoint_id is not None and d["format"] == "cow"
                           and d["id"] in self.state.get("checkpoints", from_checkpoint_id)["disks"])
            modes[d["id"]] = "incremental" if incremental else "full"
        tracked = [d["id"] for d in disks if d["format"] == "cow" and d.get("backup") == "incremental"]
        backup = self.state.put("backups", {
            "id": backup_id or new_id(), "vm_id": vm_id, "phase": "initializing", "created": now(),
            "description": description, "from_checkpoint_id": from_checkpoint_id, "host_id": self.host_id(),
            "disks": modes, "to_checkpoint_id": new_id() if tracked else None, "tracked": tracked,
            "snapshot_id": None, "require_consistency": require_consistency})
        for d in disks:
            d["status"] = "locked"
        if backup["to_checkpoint_id"]:
            self.state.put("checkpoints", {"id": backup["to_checkpoint_id"], "vm_id": vm_id, "parent_id": parent,
                                           "created": now(), "state": "created", "description": description,
                                           "disks": tracked})
        self.event(10790, f"Backup {backup['id']} for VM {vm['name']} started (User: admin@internal-authz).",
                   vm_id=vm_id, correlation_id=correlation_id)
        stall = self.faults.take("backup_stall")
        self.spawn(self._prepare_backup(vm, backup, stall, correlation_id), f"backup {backup['id']}")
        return backup

    async def _prepare_backup(self, vm: dict, backup: dict, stall: bool, correlation_id: str | None) -> None:
        await asyncio.sleep(STEP)
        backup.update(phase="starting", modified=now())
        self.state.save()
        if stall:
            self.faults.stalled_backups.add(backup["id"])
            return
        # A running VM's guest file systems are frozen while the backup's checkpoint is taken, when its guest agent
        # runs (engine 4.4.4+); with require_consistency a failed freeze fails the backup, else it goes on.
        frozen = vm["status"] == "up" and vm.get("guest_agent")
        if frozen:
            self.event(10900, f"Freeze of guest filesystems on VM {vm['name']} was initiated.", vm_id=vm["id"],
                       correlation_id=correlation_id)
            if self.faults.take("freeze_fail"):
                frozen = False
                self.event(10901, f"Failed to freeze guest filesystems on VM {vm['name']}. Note that using the "
                                  "created snapshot might cause data inconsistency.", severity="warning",
                           vm_id=vm["id"], correlation_id=correlation_id)
                if backup.get("require_consistency"):
                    await self._fail_backup(vm, backup, "failed to freeze the guest filesystems, and the backup "
                                                        "requires consistency")
                    self.state.save()
                    return
        try:
            async with self.vm_lock(vm["id"]):
                for disk_id, mode in backup["disks"].items():
                    to_cp = backup["to_checkpoint_id"] if disk_id in backup["tracked"] else None
                    from_cp = backup["from_checkpoint_id"] if mode == "incremental" else None
                    if from_cp and from_cp not in await asyncio.to_thread(self.store.checkpoints, disk_id):
                        # The bitmap is gone on the host: this disk can only be read in full.
                        backup["disks"][disk_id] = "full"
                        from_cp = None
                    await asyncio.to_thread(self.store.begin_backup, disk_id, backup["id"],
                                            from_checkpoint_id=from_cp, to_checkpoint_id=to_cp)
            if frozen:
                self.event(10902, f"Thaw of guest filesystems on VM {vm['name']} was initiated.", vm_id=vm["id"],
                           correlation_id=correlation_id)
            await asyncio.sleep(STEP)
            if backup["phase"] == "starting":
                backup.update(phase="ready", modified=now())
        except Exception as e:
            log.exception("backup %s failed to start", backup["id"])
            await self._fail_backup(vm, backup, str(e))
        self.state.save()

    async def _release_backup(self, backup: dict) -> None:
        async with self.vm_lock(backup["vm_id"]):
            for disk_id in backup["disks"]:
                if disk_id in self.state.table("disks"):
                    if backup["id"] in await asyncio.to_thread(self.store.backups, disk_id):
                        await asyncio.to_thread(self.store.end_backup, disk_id, backup["id"])
                    self.state.get("disks", disk_id)["status"] = "ok"

    async def _fail_backup(self, vm: dict, backup: dict, reason: str) -> None:
        backup.update(phase="finalizing", modified=now())
        await self._release_backup(backup)
        cp_id = backup.get("to_checkpoint_id")
        if cp_id and cp_id in self.state.table("checkpoints"):
            for disk_id in backup["tracked"]:
                if disk_id in self.state.table("disks"):
                    await asyncio.to_thread(self.store.remove_checkpoint, disk_id, cp_id)
            self.state.delete("checkpoints", cp_id)
        backup.update(phase="failed", modified=now())
        self.event(10792, f"Backup {backup['id']} for VM {vm['name']} failed: {reason}", severity="error",
                   vm_id=vm["id"])

    def finalize_backup(self, vm_id: str, backup_id: str, correlation_id: str | None) -> None:
        vm = self.vm(vm_id)
        backup = self.get("backups", backup_id, "backup")
        if backup["vm_id"] != vm_id:
            raise not_found(f"backup {backup_id}")
        if backup["phase"] in ("finalizing", "succeeded", "failed"):
            raise failed(f"Cannot stop VM backup. The backup is already in '{backup['phase'].capitalize()}' phase")
        if any(x.get("backup_id") == backup_id and x["phase"] not in TRANSFER_DONE
               for x in self.state.table("transfers").values()):
            raise conflict("Cannot stop VM backup. There is an active image transfer for the VM backup")
        premature = backup["phase"] != "ready"
        backup.update(phase="finalizing", modified=now())
        self.faults.stalled_backups.discard(backup_id)

        async def finish():
            await asyncio.sleep(STEP)
            if premature:
                await self._fail_backup(vm, backup, "stopped before it was ready")
            elif self.faults.take("backup_finalize_fail"):
                await self._fail_backup(vm, backup, "the host could not end the backup (injected fault)")
            else:
                try:
                    await self._release_backup(backup)
                except Exception as e:  # the engine reports a backup it could not close as failed, never hangs
                    log.exception("closing backup %s failed", backup_id)
                    backup.update(phase="failed", modified=now())
                    self.event(10792, f"Backup {backup_id} for VM {vm['name']} failed: {e}", severity="error",
                               vm_id=vm_id)
                    self.state.save()
                    return
                backup.update(phase="succeeded", modified=now())
                self.event(10793, f"Backup {backup_id} for VM {vm['name']} completed successfully "
                                  "(User: admin@internal-authz).", vm_id=vm_id, correlation_id=correlation_id)
            self.state.save()
        self.spawn(finish(), f"finalize backup {backup_id}")
        if premature:
            # The engine answers a premature stop with a fault, after starting the cleanup.
            raise failed("Cannot stop VM backup. The backup was stopped before it was ready and has failed")

    # -- image transfers ------------------------------------------------------------------------------------
    def add_transfer(self, *, disk_id: str | None, snapshot_id: str | None, backup_id: str | None, direction: str,
                     fmt: str | None, inactivity_timeout: int | None, timeout_policy: str | None, shallow: bool,
                     correlation_id: str | None) -> dict:
        source_snapshot = None
        if snapshot_id and not disk_id:
            owner = next((s for s in self.state.table("snapshots").values()
                          if snapshot_id in s["disk_snapshots"].values()), None)
            if owner is None:
                raise not_found(f"disk snapshot {snapshot_id}")
            disk_id = next(d for d, ds in owner["disk_snapshots"].items() if ds == snapshot_id)
            source_snapshot = owner
        if not disk_id:
            raise incomplete("ImageTransfer [disk.id|snapshot.id] required for add")
        disk = self.get("disks", disk_id, "disk")
        backup = None
        if backup_id:
            backup = self.get("backups", backup_id, "backup")
            if backup["phase"] != "ready":
                raise conflict(f"Cannot transfer Virtual Disk. Backup {backup_id} is not ready "
                               f"(phase {backup['phase']})")
            if disk_id not in backup["disks"]:
                raise failed(f"Cannot transfer Virtual Disk. Disk {disk['name']} is not part of backup {backup_id}")
            if direction != "download":
                raise failed("Cannot transfer Virtual Disk. A backup can only be downloaded")
            if any(x.get("backup_id") == backup_id and x["disk_id"] == disk_id and x["phase"] not in TRANSFER_DONE
                   for x in self.state.table("transfers").values()):
                raise conflict(f"Cannot transfer Virtual Disk. Disk {disk['name']} is being transferred")
        elif source_snapshot is None:
            if disk["status"] != "ok":
                raise conflict(f"Cannot transfer Virtual Disk. Disk {disk['name']} is locked. Please try again in a "
                               "few minutes")
            for a in self.state.find("attachments", disk_id=disk_id):
                if not a.get("snapshot_id") and self.vm(a["vm_id"])["status"] != "down":
                    raise conflict(f"Cannot transfer Virtual Disk. Disk {disk['name']} is attached to a running VM")
        if direction not in ("download", "upload"):
            raise failed(f"Cannot transfer Virtual Disk. Unknown direction {direction}")
        x = self.state.put("transfers", {
            "id": new_id(), "disk_id": disk_id, "snapshot_id": snapshot_id if source_snapshot else None,
            "source_snapshot": source_snapshot["id"] if source_snapshot else None, "backup_id": backup_id,
            "direction": direction, "format": fmt or "raw", "phase": "initializing",
            "inactivity_timeout": inactivity_timeout or 60, "timeout_policy": timeout_policy or "legacy",
            "shallow": shallow, "host_id": self.host_id(), "ticket_id": new_id(), "created": now(),
            "locked_disk": backup is None and source_snapshot is None})
        if x["locked_disk"]:
            disk["status"] = "locked"
        self.event(1031, f"Image {direction.capitalize()} with disk {disk['name']} was initiated by "
                         f"admin@internal-authz. Transfer {x['id']}.", correlation_id=correlation_id,
                   vm_id=backup["vm_id"] if backup else None)
        fail = self.faults.take("transfer_fail")
        self.spawn(self._open_transfer(x, disk, fail), f"transfer {x['id']}")
        return x

    async def _open_transfer(self, x: dict, disk: dict, fail: bool) -> None:
        await asyncio.sleep(STEP)
        if fail:
            await self._end_transfer(x, ok=False, reason="the host failed to prepare the image (injected fault)")
            return
        try:
            if x["backup_id"]:
                image, image_fmt, bitmap = await asyncio.to_thread(self.store.backup_view, x["disk_id"],
                                                                   x["backup_id"])
                if self.state.get("backups", x["backup_id"])["disks"][x["disk_id"]] != "incremental":
                    bitmap = None
                size = disk["provisioned_size"]
            else:
                # A disk snapshot's chain up to it, or the disk's now; shallow (a raw download): its one volume.
                shallow = x["shallow"] and x["direction"] == "download" and x["format"] == "raw"
                image, image_fmt, size = await asyncio.to_thread(self.store.export_view, x["disk_id"],
                                                                 x["source_snapshot"], shallow=shallow)
                bitmap = None
            transfer_url, proxy_url = await self.plane.open_ticket(
                x["ticket_id"], image=image, image_format=image_fmt, direction=x["direction"],
                size=size, bitmap=bitmap, inactivity_timeout=x["inactivity_timeout"],
                transfer_id=x["id"])
        except Exception as e:
            log.exception("transfer %s could not start", x["id"])
            await self._end_transfer(x, ok=False, reason=str(e))
            return
        if x["phase"] != "initializing":        # cancelled meanwhile
            await self.plane.close_ticket(x["ticket_id"])
            return
        if self.faults.take("host_unreachable"):
            # As when a firewall stands between the client and the host: its daemon's address answers nothing.
            transfer_url = unreachable(transfer_url)
        x.update(phase="transferring", transfer_url=transfer_url, proxy_url=proxy_url, opened=now())
        self.state.save()
        self.spawn(self._watch_transfer(x), f"watch transfer {x['id']}")

    async def _watch_transfer(self, x: dict) -> None:
        """The engine's monitor: progress from the daemon, inactivity timeouts, vanished tickets."""
        while x["phase"] == "transferring":
            await asyncio.sleep(1.0)
            if x["phase"] != "transferring":
                return
            try:
                status = await self.plane.ticket_status(x["ticket_id"])
            except Exception:
                continue
            if status is None:
                await self._end_transfer(x, ok=False, reason="the ticket was removed on the host")
                return
            x.update(transferred=status.get("transferred", 0), active=status.get("active", False))
            if not status.get("active") and status.get("idle_time", 0) > x["inactivity_timeout"]:
                if x["timeout_policy"] == "pause":
                    x["phase"] = "paused_system"
                    self.event(1037, f"Transfer {x['id']} was paused by the system: no activity for "
                                     f"{x['inactivity_timeout']} seconds.", severity="warning")
                    return
                x["phase"] = "cancelled_system"
                await self._end_transfer(x, ok=False, reason=f"no activity for {x['inactivity_timeout']} seconds")
                return

    def _unlock_disk_after_transfer(self, x: dict) -> None:
        if x.get("locked_disk") and x["disk_id"] in self.state.table("disks"):
            self.state.get("disks", x["disk_id"])["status"] = "ok"

    async def _end_transfer(self, x: dict, *, ok: bool, reason: str = "", cleanup: bool = False) -> None:
        x["phase"] = "finalizing_success" if ok else ("finalizing_cleanup" if cleanup else "finalizing_failure")
        self.state.save()
        with contextlib.suppress(Exception):
            status = await self.plane.ticket_status(x["ticket_id"])
            if status:
                x["transferred"] = status.get("transferred", x.get("transferred", 0))
        try:
            await self.plane.close_ticket(x["ticket_id"])
        except Exception as e:
            log.warning("closing ticket of transfer %s: %s", x["id"], e)
            ok = False
        await asyncio.sleep(STEP)
        x.update(phase="finished_success" if ok else ("finished_cleanup" if cleanup else "finished_failure"),
                 transfer_url=None, proxy_url=None, active=False, ended=now())
        self._unlock_disk_after_transfer(x)
        disk = self.state.table("disks").get(x["disk_id"], {"name": x["disk_id"]})
        if ok:
            self.event(1032, f"Image {x['direction'].capitalize()} with disk {disk['name']} succeeded. "
                             f"Transfer {x['id']}.")
        elif cleanup:
            self.event(1033, f"Image {x['direction'].capitalize()} with disk {disk['name']} was cancelled. "
                             f"Transfer {x['id']}.")
        else:
            self.event(1034, f"Image {x['direction'].capitalize()} with disk {disk['name']} failed: {reason}. "
                             f"Transfer {x['id']}.", severity="error")
        self.state.save()

    def finalize_transfer(self, transfer_id: str) -> None:
        x = self.get("transfers", transfer_id, "image transfer")
        if x["phase"] not in ("transferring", "paused_user", "paused_system"):
            raise conflict(f"Cannot finalize transfer {transfer_id} in phase {x['phase']}")
        x["phase"] = "finalizing_success"
        self.spawn(self._end_transfer(x, ok=True), f"finalize transfer {transfer_id}")

    def cancel_transfer(self, transfer_id: str) -> None:
        x = self.get("transfers", transfer_id, "image transfer")
        if x["phase"] in TRANSFER_DONE or x["phase"].startswith("finalizing"):
            raise conflict(f"Cannot cancel transfer {transfer_id} in phase {x['phase']}")
        x["phase"] = "cancelled_user"
        self.spawn(self._end_transfer(x, ok=False, cleanup=True), f"cancel transfer {transfer_id}")

    async def expire_tickets(self) -> None:
        for x in self.state.table("transfers").values():
            if x["phase"] == "transferring":
                await self.plane.expire_ticket(x["ticket_id"])

    # -- tags -----------------------------------------------------------------------------------------------
    def add_tag(self, name: str | None, description: str | None, parent: str | None) -> dict:
        if not name:
            raise incomplete("Tag [name] required for add")
        if any(g["name"] == name for g in self.state.table("tags").values()):
            raise conflict(f"Cannot add Tag. Tag name {name} is already in use")
        tag = self.state.put("tags", {"id": new_id(), "name": name, "description": description or "",
                                      "parent_id": parent})
        self.event(432, f"New Tag {name} was created by admin@internal-authz.")  # USER_ADD_TAG
        return tag

    def update_tag(self, tag_id: str, name: str | None, description: str | None, parent: str | None) -> dict:
        """PUT /tags/{id}, as BackendTagResource.update: a new parent is MoveTag first (USER_MOVE_TAG 555), then
        UpdateTag (USER_UPDATE_TAG 430) always."""
        tag = self.get("tags", tag_id, "tag")
        if name and name != tag["name"] and any(g["name"] == name for g in self.state.table("tags").values()):
            raise conflict(f"Cannot update Tag. Tag name {name} is already in use")
        try:
            new = self.state.by_name("tags", parent) if parent else None  # the parent's id or name
        except NotFound:
            raise not_found(f"tag {parent}") from None
        if new is not None and new["id"] != (tag.get("parent_id") or ROOT_TAG_ID):
            old = self.state.table("tags").get(tag.get("parent_id") or ROOT_TAG_ID, {"name": "root"})["name"]
            tag["parent_id"] = new["id"]
            self.event(555, f"Tag {tag['name']} was moved from {old} to {new['name']} by admin@internal-authz.")
        if name:
            tag["name"] = name
        if description is not None:
            tag["description"] = description
        self.event(430, f"Tag {tag['name']} configuration was updated by admin@internal-authz.")  # USER_UPDATE_TAG
        return tag

    def remove_tag(self, tag_id: str) -> None:
        tag = self.get("tags", tag_id, "tag")
        for vm in self.state.table("vms").values():
            if tag_id in vm["tags"]:
                vm["tags"].remove(tag_id)
        self.state.delete("tags", tag_id)
        self.event(434, f"Tag {tag['name']} was removed by admin@internal-authz.")  # USER_REMOVE_TAG

    def assign_tag(self, vm_id: str, ref_id: str | None, ref_name: str | None) -> dict:
        vm = self.vm(vm_id)
        try:
            tag = self.state.by_name("tags", ref_id or ref_name or "")
        except NotFound:
            raise not_found(f"tag {ref_id or ref_name}") from None
        # AttachVmsToTagCommand: USER_ATTACH_TAG_TO_VM 440, or USER_ATTACH_TAG_TO_VM_EXISTS 454 when it was there.
        # Like the engine's, these events name the VMs only in their text (${VmsNames}): no vm reference.
        if tag["id"] not in vm["tags"]:
            vm["tags"].append(tag["id"])
            self.event(440, f"Tag {tag['name']} was attached to VM(s) {vm['name']} by admin@internal-authz.",
                       tag_id=tag["id"])
        else:
            self.event(454, f"Tag {tag['name']} already attached to VM(s) {vm['name']}.", severity="warning",
                       tag_id=tag["id"])
        return tag

    def unassign_tag(self, vm_id: str, tag_id: str) -> None:
        vm = self.vm(vm_id)
        if tag_id not in vm["tags"]:
            raise not_found(f"tag {tag_id} on VM {vm['name']}")
        vm["tags"].remove(tag_id)
        tag = self.state.get("tags", tag_id)
        self.event(446, f"Tag {tag['name']} was detached from VM(s) {vm['name']} by admin@internal-authz.",
                   tag_id=tag_id)  # USER_DETACH_VM_FROM_TAG


def _mac() -> str:
    b = uuid.uuid4().bytes
    return "56:6f:" + ":".join(f"{x:02x}" for x in b[:4])
