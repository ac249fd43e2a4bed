"""`olvm-backup verify`, `export` and `forget`. Verify and export hold their restore point in use while they run
(repository/holds.py: prune keeps it); forget publishes what it removed on `repository.events`."""
from __future__ import annotations

import sys
from pathlib import Path

from ..repository import catalog
from ..actors import actor
from ..config import Settings
from ..errors import BackupError, ObjectLocked
from ..format.manifest import Manifest
from ..objectstore import ObjectStore
from ..objectstore.locking import utcnow
from ..repository.sealedstore import open_sealed
from ..repository.export import export_disk
from ..repository.holds import holding
from ..repository.verify import verify
from .progress import human


async def verify_restore_point(settings: Settings, backup_id: str) -> int:

    async with open_sealed(settings, ensure_bucket=False) as (store, sealer), \
            holding(store, backup_id, "verify", actor()):
        manifest = await catalog.find(store, backup_id)
        report = await verify(store, manifest, sealer)
        lock = await restore_point_lock(store, manifest)
    print(f"restore point {backup_id} of {manifest.vm_name}: {report.chunks_checked} chunks, "
          f"{human(report.bytes_checked)} verified")
    print(f"Object Lock: {lock}")
    for d in report.damage:
        where = f" in pack {d.pack}" if d.pack else ""
        print(f"DAMAGED disk {d.disk} offset {d.offset} length {d.length}: chunk {d.digest[:16]}…{where}: "
              f"{d.problem}", file=sys.stderr)
    if report.ok:
        print("OK: every chunk is present and matches its digest")
        return 0
    print(f"FAILED: {len(report.damage)} damaged range(s); this restore point cannot be restored whole",
          file=sys.stderr)
    return 1


async def restore_point_lock(store: ObjectStore, manifest: Manifest) -> str:
    """A restore point's Object Lock state, as its manifest's (what prune and GC will find): 'locked until
    2026-12-30 14:03 UTC (compliance)' or 'not locked'."""
    info = await store.head(catalog.manifest_key(manifest.vm_id, manifest.backup_id))
    if info is None or info.lock is None:
        return "not locked"
    return info.lock.describe(utcnow())


async def export_restore_point_disk(settings: Settings, backup_id: str, disk: str, output: str) -> int:

    async with open_sealed(settings, ensure_bucket=False) as (store, sealer), \
            holding(store, backup_id, "export", actor()):
        manifest = await catalog.find(store, backup_id)
        record = manifest.disk(disk)
        written = await export_disk(store, manifest, record, Path(output), sealer)
    print(f"{output}: disk {record.name} of {manifest.vm_name} at {backup_id}, {human(record.size)} "
          f"({human(written)} of data)")
    return 0


async def forget_restore_point(settings: Settings, backup_id: str, dry_run: bool) -> int:
    from ..repository import events
    from . import pruning

    async with open_sealed(settings, ensure_bucket=False) as (store, _):
        manifest = await catalog.find(store, backup_id)
        what = f"restore point {backup_id} of {manifest.vm_name}"
        if dry_run:
            print(f"would forget {what} ({await restore_point_lock(store, manifest)})")
            return 0
        who = actor()
        async with pruning.open_events(settings, "a forgotten restore point") as bus:
            try:
                await catalog.forget(store, manifest)
            except ObjectLocked as e:
                raise BackupError(f"{what} cannot be forgotten: {e}") from None
            await events.publish(bus, "forgotten", actor=who, backup_id=backup_id, vm=manifest.vm_id,
                                 reason=f"forget by {who}", detail={"vm_name": manifest.vm_name})
    print(f"forgot {what}: it is no longer listed or restorable; its data stays in the store until garbage "
          "collection")
    return 0
