"""Commands that ask the pipeline for work and follow it: backup, restore."""
from __future__ import annotations

import asyncio
import sys
import time
import uuid

from schemas import BackupEvent, BackupRequest, RestoreEvent, RestoreRequest
from schemas.topics import BACKUP_EVENTS, BACKUP_REQUESTS, RESTORE_EVENTS, RESTORE_REQUESTS

from ..config import Settings
from ..kafka import Bus
from ..kafka.follow import Follower
from .progress import ProgressBar, duration, human

FINAL = {"completed", "failed", "cancelled"}


async def submit(settings: Settings, requests_topic, events_topic, request, key: str, wait: bool,
                 timeout: float, summary) -> tuple[int, object | None]:
    """Publish a request; with `wait`, follow its events (subscribed before publishing) to the end.
    Returns the exit code and the final event (None without `wait` or when none came in time)."""
    events: asyncio.Queue = asyncio.Queue()

    def mine(event) -> None:
        if event.request_id == request.request_id:
            events.put_nowait(event)

    async with Bus(settings.kafka, client_id="olvm-backup-cli") as bus, \
            Follower(settings.kafka, events_topic, mine, client_id="olvm-backup-cli/events"):
        await bus.publish(requests_topic, request, key=key)
        print(f"requested: {request.request_id}", file=sys.stderr)
        if not wait:
            return 0, None
        return await _follow(events, timeout, summary)


async def request_backup(settings: Settings, vm: str, mode: str, exclude: list[str], quiesce: bool,
                         wait: bool, timeout: float) -> tuple[int, BackupEvent | None]:
    """Exit code and, with `wait`, the backup's final event."""
    request = BackupRequest(request_id=str(uuid.uuid4()), vm=vm, mode=mode, exclude_disks=exclude,
                            quiesce=quiesce, requested_by="cli", requested_at=time.time())
    return await submit(settings, BACKUP_REQUESTS, BACKUP_EVENTS, request, vm, wait, timeout, _summary)


async def request_restore(settings: Settings, restore_point: str, *, name: str | None, replace: bool,
                          cluster: str | None, storage_domain: str | None, disks: list[str],
                          target_vm: str | None, power_on: bool, keep_failed: bool, wait: bool,
                          timeout: float) -> tuple[int, RestoreEvent | None]:
    """Exit code and, with `wait`, the restore's final event."""
    request = RestoreRequest(request_id=str(uuid.uuid4()), restore_point=restore_point, name=name,
                             replace=replace, cluster=cluster, storage_domain=storage_domain, disks=disks,
                             target_vm=target_vm, power_on=power_on, keep_failed=keep_failed,
                             requested_by="cli", requested_at=time.time())
    return await submit(settings, RESTORE_REQUESTS, RESTORE_EVENTS, request, restore_point, wait, timeout,
                        _restore_summary)


def _restore_summary(bar: ProgressBar, event: RestoreEvent) -> int:
    if event.kind != "completed":
        bar.message(f"{event.kind.upper()}: {event.message}")
        return 1
    d = event.detail
    bar.message(f"completed: {event.message}")
    bar.message(f"  sent {human(d.get('bytes_sent', 0))} of data in {duration(d.get('duration', 0))}; "
                f"disks: {', '.join(d.get('disks', []))}; VM is {d.get('status')}")
    if d.get("consistency"):
        bar.message(f"  the restore point's file systems: {d['consistency']}")
    print(event.vm_id)
    return 0


async def _follow(events: asyncio.Queue, timeout: float, summary) -> tuple[int, object | None]:
    bar = ProgressBar()
    deadline = time.monotonic() + timeout
    while True:
        try:
            event = await asyncio.wait_for(events.get(), max(0.1, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            bar.message(f"no answer within {timeout:.0f}s: is the stack up? (olvm-backup status)")
            return 2, None
        if event.kind == "progress" and event.bytes_total:
            bar.update(event.bytes_done or 0, event.bytes_total)
        elif event.kind in ("accepted", "started", "progress", "stored"):
            bar.message(f"{event.kind}: {event.message}")
        if event.kind in FINAL:
            return summary(bar, event), event


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
    if d.get("consistency"):
        bar.message(f"  consistency: {d['consistency']}")
    if d.get("steps"):
        bar.message(f"  time: {steps_line(d['steps'])}")
    print(event.backup_id)
    return 0


def steps_line(steps: dict[str, float]) -> str:
    """`prepare 0.1 s, engine start 0.5 s, ...`: where a backup's time went (the engine is released while the last
    packs are sealed, so those two steps overlap)."""
    def seconds(value: float) -> str:
        return f"{value:.2f} s" if value < 60 else duration(value)

    return ", ".join(f"{name} {seconds(value)}" for name, value in steps.items())
