"""The engine's disk actions that give space back: POST /disks/{id}/sparsify (SparsifyImageCommand) and
POST /disks/{id}/reduce (ReduceImageCommand).

Both validate at once (a refusal is a <fault>), then lock the disk while the host works and unlock it when done, with
the engine's audit events: sparsify 1325 USER_SPARSIFY_IMAGE_START, 1326 ..._FINISH_SUCCESS, 1327 ..._FINISH_FAILURE;
reduce 382 USER_REDUCE_DISK_FINISHED_SUCCESS, 383 ..._FAILURE. The storage side is sim/dataplane/compact.py.
"""
from __future__ import annotations

import asyncio
import logging

from ..dataplane import compact
from .errors import conflict, failed

log = logging.getLogger(__name__)

USER = "admin@internal-authz"


def _validate(engine, disk: dict, verb: str) -> None:
    """What both commands check, in the engine's words (DiskValidator / DiskImagesValidator)."""
    action = f"Cannot {verb} Virtual Disk."
    if disk["status"] == "locked":
        raise conflict(f"{action} The following disks are locked: {disk['name']}. Please try again in a few minutes.")
    if disk["status"] == "illegal":
        raise conflict(f"{action} The following disks are in illegal state: {disk['name']}")
    # ACTION_TYPE_FAILED_DISK_PLUGGED_TO_NON_DOWN_VMS: a plugged disk of a VM that is not down (any transitional
    # state included), snapshot attachments too.
    running = sorted({engine.vm(a["vm_id"])["name"] for a in engine.state.find("attachments", disk_id=disk["id"])
                      if a["active"] and engine.vm(a["vm_id"])["status"] != "down"})
    if running:
        raise conflict(f"{action} The disk {disk['name']} is plugged to non-Down VMs: {','.join(running)}")


def sparsify(engine, disk_id: str, correlation_id: str | None) -> None:
    disk = engine.get("disks", disk_id, "disk")
    _validate(engine, disk, "sparsify")
    # Only the active volume can be sparsified: the engine refuses a disk with snapshots.
    if any(disk_id in s["disks"] for s in engine.state.table("snapshots").values()):
        raise conflict("Cannot sparsify Virtual Disk. The disk has snapshots.")
    _run(engine, disk, "sparsify", compact.sparsify, correlation_id,
         start=(1325, f"Started to sparsify {disk['name']}"),
         ok=(1326, f"{disk['name']} sparsified successfully."),
         bad=(1327, f"Failed to sparsify {disk['name']}."))


def reduce(engine, disk_id: str, correlation_id: str | None) -> None:
    disk = engine.get("disks", disk_id, "disk")
    _validate(engine, disk, "reduce")
    if disk["format"] != "cow":
        # vdsm reduces only qcow2 volumes: a raw volume is as large as the disk by definition.
        raise failed("Cannot reduce Virtual Disk. Reducing is supported only for QCOW2 (cow) disks.")
    _run(engine, disk, "reduce", compact.reduce, correlation_id, start=None,
         ok=(382, f"Disk {disk['name']} has been successfully reduced."),
         bad=(383, f"Failed to reduce disk {disk['name']}."))


def _run(engine, disk: dict, verb: str, work, correlation_id: str | None, *, start, ok, bad) -> None:
    disk["status"] = "locked"
    if start:
        engine.event(start[0], start[1], correlation_id=correlation_id)
    engine.state.save()

    async def body():
        job = engine.start_job(f"{verb.capitalize()} disk {disk['name']}", correlation_id)
        done = False
        try:
            await asyncio.to_thread(work, engine.store, disk["id"])
            done = True
        except Exception:
            log.exception("%s of disk %s failed", verb, disk["id"])
        finally:
            # The disk stays locked at least as long as any other transition the simulator shows.
            await asyncio.sleep(engine.hold())
            if disk["id"] in engine.state.table("disks"):
                disk["status"] = "ok"
            engine.end_job(job, done)
            code, text = ok if done else bad
            engine.event(code, text, severity="normal" if done else "error", correlation_id=correlation_id)
    engine.spawn(body(), f"{verb} disk {disk['name']}")
