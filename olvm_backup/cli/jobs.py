"""Commands that ask the pipeline for work and follow it: backup, backups."""
from __future__ import annotations

import asyncio
import sys
import time
import uuid

from schemas import BackupEvent, BackupRequest
from schemas.topics import BACKUP_EVENTS, BACKUP_REQUESTS

from .. import catalog
from ..config import Settings
from ..kafka import Bus
from ..kafka.follow import Follower
from ..objectstore import open_store
from .progress import ProgressBar, duration, human

FINAL = {"completed", "failed", "cancelled"}


async def request_backup(settings: Settings, vm: str, mode: str, exclude: list[str], quiesce: bool,
                         wait: bool, timeout: float) -> int:
    request = BackupRequest(request_id=str(uuid.uuid4()), vm=vm, mode=mode, exclude_disks=exclude,
                            quiesce=quiesce, requested_by="cli", requested_at=time.time())
    events: asyncio.Queue[BackupEvent] = asyncio.Queue()

    def mine(event: BackupEvent) -> None:
        if event.request_id == request.request_id:
            events.put_nowait(event)

    async with Bus(settings.kafka, client_id="olvm-backup-cli") as bus, \
            Follower(settings.kafka, BACKUP_EVENTS, mine, client_id="olvm-backup-cli/events"):
        await bus.publish(BACKUP_REQUESTS, request, key=vm)
        print(f"backup requested: {request.request_id} ({vm}, {mode})", file=sys.stderr)
        if not wait:
            return 0
        return await _follow(events, timeout)


async def _follow(events: asyncio.Queue, timeout: float) -> int:
    bar = ProgressBar()
    deadline = time.monotonic() + timeout
    while True:
        try:
            event = await asyncio.wait_for(events.get(), max(0.1, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            bar.message(f"no answer within {timeout:.0f}s: is the stack up? (olvm-backup status)")
            return 2
        if event.kind == "progress" and event.bytes_total:
            bar.update(event.bytes_done or 0, event.bytes_total)
        elif event.kind in ("accepted", "started", "progress", "stored"):
            bar.message(f"{event.kind}: {event.message}")
        if event.kind in FINAL:
            return _summary(bar, event)


def _summary(bar: ProgressBar, event: BackupEvent) -> int:
    if event.kind != "completed":
        bar.message(f"{event.kind.upper()}: {event.message}")
        return 1
    d = event.detail
    bar.message(f"completed: restore point {event.backup_id} of {event.vm} ({d.get('mode')})")
    bar.message(f"  read {human(d.get('bytes_read', 0))}, stored {human(d.get('bytes_stored', 0))} new "
                f"(after dedup and compression), in {duration(d.get('duration', 0))}")
    for name, disk in d.get("disks", {}).items():
        why = f" ({disk['reason']})" if disk.get("reason") else ""
        bar.message(f"  disk {name}: {disk['mode']}{why}, read {human(disk['bytes_read'])}, "
                    f"stored {human(disk['bytes_new'])}")
    print(event.backup_id)
    return 0


async def list_backups(settings: Settings, vm: str | None) -> int:
    async with open_store(settings.s3) as store:
        manifests = await catalog.list_manifests(store)
    if vm:
        manifests = [m for m in manifests if vm in (m.vm_id, m.vm_name)]
    if not manifests:
        print("no restore points" + (f" for {vm}" if vm else ""), file=sys.stderr)
        return 0
    print(f"{'restore point':<36}  {'vm':<16} {'taken (UTC)':<19}  {'mode':<11} {'disks':>5} {'size':>10} "
          f"{'stored':>10}")
    for m in manifests:
        taken = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(m.completed_at))
        size = sum(d.size for d in m.disks)
        print(f"{m.backup_id:<36}  {m.vm_name:<16} {taken:<19}  {m.mode:<11} {len(m.disks):>5} "
              f"{human(size):>10} {human(m.stored_bytes()):>10}")
    return 0
