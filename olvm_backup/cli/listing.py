"""`backups`: the restore points the catalog in object storage holds (no broker needed)."""
from __future__ import annotations

import json
import sys
import time

from ..repository import catalog
from ..config import Settings
from ..repository.sealedstore import open_sealed
from .progress import human


def point_doc(m) -> dict:
    """A restore point for scripts: what `backups --json` prints per backup."""
    return {"backup_id": m.backup_id, "vm_id": m.vm_id, "vm_name": m.vm_name, "mode": m.mode,
            "completed_at": m.completed_at, "from_checkpoint": m.from_checkpoint, "to_checkpoint": m.to_checkpoint,
            "parent_backup": m.parent_backup, "excluded_disks": m.excluded_disks, "stored_bytes": m.stored_bytes(),
            "request_id": m.request_id, "requested_by": m.requested_by,
            "consistency": m.consistency or None, "strategy": m.strategy, "snapshot_id": m.snapshot_id,
            "disks": [{"disk_id": d.disk_id, "name": d.name, "size": d.size, "mode": d.mode, "reason": d.reason,
                       "bytes_read": d.bytes_read, "bytes_new": d.bytes_new, "layers": d.layers} for d in m.disks]}


async def list_backups(settings: Settings, vm: str | None, as_json: bool = False) -> int:
    async with open_sealed(settings) as (store, _):
        manifests = await catalog.list_manifests(store)
    if vm:
        manifests = [m for m in manifests if vm in (m.vm_id, m.vm_name)]
    if as_json:
        print(json.dumps([point_doc(m) for m in manifests], indent=1))
        return 0
    if not manifests:
        print("no restore points" + (f" for {vm}" if vm else ""), file=sys.stderr)
        return 0
    print(f"{'restore point':<36}  {'vm':<16} {'taken (UTC)':<19}  {'strategy':<8}  {'mode':<11} {'disks':>5} "
          f"{'size':>10} {'stored':>10}  consistency")
    for m in manifests:
        taken = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(m.completed_at))
        size = sum(d.size for d in m.disks)
        print(f"{m.backup_id:<36}  {m.vm_name:<16} {taken:<19}  {m.strategy:<8}  {m.mode:<11} {len(m.disks):>5} "
              f"{human(size):>10} {human(m.stored_bytes()):>10}  {m.consistency or '-'}")
    return 0
