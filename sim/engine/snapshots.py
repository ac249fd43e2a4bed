"""Snapshot chains as the engine keeps them: which volume (image) id each layer has, disk snapshots as listed under
a storage domain, restoring a VM to a snapshot and creating a VM from one.

Volume ids follow the engine: a snapshot keeps the id of the volume it froze and the disk's new active volume gets a
new one (disk.image_id changes); a removal is a backward merge (RemoveSnapshotSingleDiskCommandBase
.handleBackwardMerge): the removed snapshot's volume survives with its id and takes the place of its child, the
next snapshot's volume or the active one.
"""
from __future__ import annotations

import asyncio
import logging

from . import ovf
from .errors import conflict, failed
from .state import new_id

log = logging.getLogger(__name__)


def chain_of(engine, disk_id: str) -> list[dict]:
    """The snapshots holding a volume of the disk, oldest first (the disk's chain, base first, without the active
    volume)."""
    return sorted((s for s in engine.state.table("snapshots").values() if disk_id in s.get("disk_snapshots", {})),
                  key=lambda s: s["date"])


def merged(engine, snap: dict, disk_id: str) -> None:
    """After snap's volume of the disk was merged with its child: the surviving volume (snap's id) now belongs to
    the child, the next snapshot of the disk or the active layer."""
    survivor = snap["disk_snapshots"][disk_id]
    chain = chain_of(engine, disk_id)
    later = chain[chain.index(snap) + 1:] if snap in chain else []
    if later:
        child = later[0]
        # The child's OVF names its volumes: the engine rewrites it (updateVmConfigurationForImageChange).
        if child.get("ovf"):
            child["ovf"] = child["ovf"].replace(child["disk_snapshots"][disk_id], survivor)
        child["disk_snapshots"][disk_id] = survivor
    elif disk_id in engine.state.table("disks"):
        engine.state.get("disks", disk_id)["image_id"] = survivor


def creation_failed(engine, snap: dict) -> None:
    """A snapshot that could not be taken leaves the disks on the volumes they had: their ids come back."""
    for disk_id, image_id in snap["disk_snapshots"].items():
        if disk_id in engine.state.table("disks") and snap["id"] not in engine.store.snapshots(disk_id):
            engine.state.get("disks", disk_id)["image_id"] = image_id


def _status(snap: dict) -> str:
    return {"locked": "locked", "broken": "illegal"}.get(snap["status"], "ok")


def layers(engine, disk_id: str) -> list[dict]:
    """The disk's volumes base first, the active one last, each as a disk snapshot shows it: its id, parent, status,
    sizes, and the VM snapshot it belongs to (the VM's active snapshot for the active volume)."""
    disk = engine.state.get("disks", disk_id)
    try:
        volumes = engine.store.volumes(disk_id) if engine.store.exists(disk_id) else []
    except Exception:  # being created or merged: the sizes are not known now
        volumes = []
    by_owner = {v["frozen_by"]: v for v in volumes}
    active = volumes[-1] if volumes else {}
    att = next((a for a in engine.state.find("attachments", disk_id=disk_id) if not a.get("snapshot_id")), None)
    vm = engine.state.table("vms").get(att["vm_id"]) if att else None
    out, parent = [], None
    for s in chain_of(engine, disk_id):
        vol = by_owner.get(s["id"], {})
        out.append({"id": s["disk_snapshots"][disk_id], "parent": parent, "status": _status(s),
                    "actual_size": vol.get("actual_size"), "provisioned_size": vol.get("virtual_size"),
                    "vm_id": s["vm_id"], "snapshot_id": s["id"]})
        parent = out[-1]["id"]
    out.append({"id": disk["image_id"], "parent": parent, "status": disk["status"],
                "actual_size": active.get("actual_size"), "provisioned_size": active.get("virtual_size"),
                "vm_id": vm["id"] if vm else None, "snapshot_id": vm["active_snapshot"] if vm else None})
    return out


class MergeFailed(Exception):
    """The host could not merge a snapshot's volumes (an injected fault)."""


def refuse_while_locked(engine, vm: dict, action: str, kind: str) -> None:
    """The engine's VM locks around snapshots: CreateSnapshotForVm holds the VM exclusively until the snapshot is
    taken, and a VM being restored or copied is image_locked (VmValidator.vmNotLocked)."""
    if any(s["status"] == "locked" and s.get("op") == "create" for s in engine.state.find("snapshots", vm_id=vm["id"])):
        raise conflict(f"Cannot {action} {kind}. Snapshot is currently being created for VM {vm['name']}.")
    if vm["status"] == "image_locked":
        raise conflict(f"Cannot {action} {kind}: VM is locked. Please try again in a few minutes.")


def refuse_locked_disks(disks: list[dict], action: str, kind: str) -> None:
    locked = [d["name"] for d in disks if d["status"] != "ok"]
    if locked:
        raise conflict(f"Cannot {action} {kind}: The following disks are locked: {', '.join(locked)}. Please try "
                       "again in a few minutes.")


# -- restore (preview + commit) ---------------------------------------------------------------------------------
def restore(engine, vm_id: str, snapshot_id: str, correlation_id: str | None) -> None:
    """POST /vms/{vm}/snapshots/{sid}/restore: as BackendSnapshotResource.restore, TryBackToAllSnapshotsOfVm then
    RestoreAllSnapshots(COMMIT). The VM must be down; its disks the snapshot holds come back to the snapshot's content
    on a new active volume, the snapshots taken after it are removed (a committed preview erases them), its
    configuration comes back from the snapshot's OVF, and its checkpoints turn invalid. The VM is image_locked
    meanwhile."""
    vm = engine.vm(vm_id)
    if snapshot_id == vm.get("active_snapshot"):
        raise failed("Cannot preview Snapshot. The VM's active snapshot cannot be previewed")
    snap = engine.get_of("snapshots", snapshot_id, "snapshot", "vm_id", vm_id)
    refuse_while_locked(engine, vm, "preview", "Snapshot")
    if vm["status"] != "down":
        raise conflict("Cannot preview Snapshot. At least one of the VMs is not down.")
    mine = engine.state.find("snapshots", vm_id=vm_id)
    if any(s["status"] != "ok" and s["status"] != "broken" for s in mine):
        raise conflict("Cannot preview Snapshot. The VM is performing an operation on a Snapshot. Please wait for the "
                       "operation to finish, and try again.")
    if snap["status"] == "broken":
        raise failed(f"Cannot preview Snapshot. Snapshot {snap['description']} is broken")
    if engine.running_backup(vm_id):
        raise conflict(f"Cannot preview Snapshot. VM {vm['name']} is during a backup operation")
    disks = [d for d, _ in engine.vm_disks(vm_id)]
    refuse_locked_disks(disks, "preview", "Snapshot")
    later = sorted((s for s in mine if s["date"] > snap["date"]), key=lambda s: s["date"])
    busy = [s["description"] for s in later if s.get("attached_to") or s.get("cloning")]
    if busy:
        raise conflict(f"Cannot preview Snapshot. Snapshots {', '.join(busy)} taken after it are in use")
    from .engine import TRANSFER_DONE  # here: engine.py imports this module
    moving = [d["name"] for d in disks if any(x["disk_id"] == d["id"] and x["phase"] not in TRANSFER_DONE
                                              for x in engine.state.table("transfers").values())]
    if moving:  # an export of one of their volumes is open: those volumes cannot go
        raise conflict(f"Cannot preview Snapshot. Disks {', '.join(moving)} are being transferred")
    vm["status"] = "image_locked"
    snap["status"] = "in_preview"
    for d in disks:
        d["status"] = "locked"
    engine.event(46, f"Snapshot-Preview {snap['description']} for VM {vm['name']} was initiated by "
                     "admin@internal-authz.", vm_id=vm_id, correlation_id=correlation_id)
    engine.spawn(_revert(engine, vm, snap, disks, later, correlation_id), f"restore {vm['name']}")


async def _revert(engine, vm: dict, snap: dict, disks: list[dict], later: list[dict],
                  correlation_id: str | None) -> None:
    job = engine.start_job(f"Restoring VM {vm['name']} from Snapshot {snap['description']}", correlation_id)
    ok = False
    try:
        async with engine.vm_lock(vm["id"]):
            await asyncio.sleep(engine.hold())
            for d in disks:
                newer = [s for s in later if d["id"] in s["disk_snapshots"]]
                if d["id"] in snap["disk_snapshots"]:
                    await asyncio.to_thread(engine.store.revert, d["id"], snap["id"], [s["id"] for s in newer])
                    d["image_id"] = new_id()
                else:  # a disk the snapshot does not hold keeps its content: the later volumes of it merge away
                    for s in newer:
                        await asyncio.to_thread(engine.store.remove_snapshot, d["id"], s["id"])
                        merged(engine, s, d["id"])
                        del s["disk_snapshots"][d["id"]]
            engine.event(71, f"VM {vm['name']} restoring from Snapshot has been completed.", vm_id=vm["id"],
                         correlation_id=correlation_id)
            engine.event(94, f"Committing a Snapshot-Preview for VM {vm['name']} was initialized by "
                             "admin@internal-authz.", vm_id=vm["id"], correlation_id=correlation_id)
            for s in later:
                engine.state.delete("snapshots", s["id"])
            if snap.get("ovf"):
                config = ovf.read(snap["ovf"])
                vm.update(memory=config["memory"], cpu=config["cpu"], os=config["os"])
            for cp in engine.state.find("checkpoints", vm_id=vm["id"]):  # the disks' history changed under them
                cp["state"] = "invalid"
            await asyncio.sleep(engine.hold())
        ok = True
    except Exception:
        log.exception("restoring VM %s from snapshot %s failed", vm["name"], snap["id"])
    finally:
        for d in disks:
            d["status"] = "ok"
        snap["status"] = "ok"
        if vm["status"] == "image_locked":
            vm["status"] = "down"
        engine.end_job(job, ok)
        if ok:
            engine.event(95, f"Committing a Snapshot-Preview for VM {vm['name']} has been completed.",
                         vm_id=vm["id"], correlation_id=correlation_id)
        else:
            engine.event(96, f"Failed to commit Snapshot-Preview for VM {vm['name']}.", severity="error",
                         vm_id=vm["id"], correlation_id=correlation_id)


# -- a VM from a snapshot -----------------------------------------------------------------------------------------
def add_vm_from_snapshot(engine, *, snapshot_id: str, name: str | None, cluster: dict, memory: int | None,
                         cpu: dict | None, os_type: str | None, description: str | None,
                         correlation_id: str | None) -> dict:
    """POST /vms naming a snapshot (AddVmFromSnapshot): a new VM configured as the snapshot's OVF says (CPU, memory,
    OS, NICs with new MACs; what the request gives wins) with a copy of each disk the snapshot holds, its content as
    the snapshot froze it (the chain up to it, flattened), attached as the snapshot's VM had it. The new VM is
    image_locked and its disks locked until the copies are done."""
    snap = engine.get("snapshots", snapshot_id, "snapshot")
    if snap["status"] != "ok":
        raise conflict("Cannot add VM. Related operation is currently in progress. Please try again later.")
    config = ovf.read(snap["ovf"])
    sources = [engine.state.get("disks", d) for d in snap["disks"] if d in engine.state.table("disks")]
    sizes = {d["id"]: engine.store.export_view(d["id"], snap["id"])[2] for d in sources}
    vm = engine.add_vm(name=name, cluster=cluster, configuration=None, regenerate_ids=True,
                       memory=memory or config["memory"], cpu=cpu or config["cpu"], os_type=os_type or config["os"],
                       description=description if description is not None else config["description"],
                       correlation_id=correlation_id)
    from .engine import _mac  # here: engine.py imports this module
    vm["nics"] = [dict(n, id=new_id(), mac=_mac()) for n in config["nics"]]
    devices = {d["disk_id"]: d for d in config["disks"]}
    pairs = []
    for src in sources:
        dst = engine.state.put("disks", {
            "id": new_id(), "image_id": new_id(), "name": src["name"], "provisioned_size": sizes[src["id"]],
            "format": src["format"], "sparse": src.get("sparse", True), "storage_domain_id": src["storage_domain_id"],
            "backup": "none", "content_type": src.get("content_type", "data"),
            "description": src.get("description", ""), "status": "locked"})
        device = devices.get(src["id"], {})
        engine.state.put("attachments", {"id": dst["id"], "vm_id": vm["id"], "disk_id": dst["id"],
                                         "interface": device.get("interface", "virtio_scsi"),
                                         "bootable": device.get("bootable", False), "active": True,
                                         "snapshot_id": None, "read_only": False})
        pairs.append((src, dst))
    vm["status"] = "image_locked"
    snap["cloning"] = snap.get("cloning", 0) + 1
    engine.state.save()
    engine.spawn(_clone(engine, vm, snap, pairs, correlation_id), f"VM {vm['name']} from snapshot {snapshot_id}")
    return vm


async def _clone(engine, vm: dict, snap: dict, pairs: list[tuple[dict, dict]], correlation_id: str | None) -> None:
    job = engine.start_job(f"Creating VM {vm['name']} from Snapshot {snap['description']}", correlation_id)
    ok = True
    try:
        for src, dst in pairs:
            await asyncio.to_thread(engine.store.copy_at, src["id"], snap["id"], dst["id"], src["format"])
            dst["status"] = "ok"
        await asyncio.sleep(engine.hold())
    except Exception:
        log.exception("copying the disks of snapshot %s for VM %s failed", snap["id"], vm["name"])
        ok = False
    finally:
        for _, dst in pairs:
            if dst["status"] == "locked":
                dst["status"] = "illegal"
        snap["cloning"] = max(0, snap.get("cloning", 1) - 1)
        if vm["status"] == "image_locked":
            vm["status"] = "down"
        engine.end_job(job, ok)
        if ok:
            engine.event(53, f"VM {vm['name']} creation has been completed.", vm_id=vm["id"],
                         correlation_id=correlation_id)
        else:
            engine.event(60, f"Failed to complete VM {vm['name']} creation.", severity="error", vm_id=vm["id"],
                         correlation_id=correlation_id)
        engine.state.save()
