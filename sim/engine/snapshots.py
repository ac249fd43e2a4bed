"""Snapshot chains as the engine keeps them: which volume (image) id each layer has, disk snapshots as listed under
a storage domain, restoring a VM to a snapshot and creating a VM from one.

Volume ids follow the engine: a snapshot keeps the id of the volume it froze and the disk's new active volume gets a
new one (disk.image_id changes); a removal is a backward merge (RemoveSnapshotSingleDiskCommandBase
.handleBackwardMerge): the removed snapshot's volume survives with its id and takes the place of its child, the
next snapshot's volume or the active one.
"""
from __future__ import annotations


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
        later[0]["disk_snapshots"][disk_id] = survivor
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
