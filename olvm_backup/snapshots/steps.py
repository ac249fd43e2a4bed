"""Taking and dropping our snapshots, for `olvm-backup snapshots` and the scheduler's snapshot policies: the record
in the repository first (records.py), then the engine (engine/snapshots.py), so a snapshot whose creation is cut
short is still known as ours; the record goes only once the engine no longer lists the snapshot.

Quiesce, as for backups (services/snapshotter/quiesce.py): the engine freezes a running VM's file systems through
its guest agent while it takes a snapshot, when it can, and says in its events (under the request's correlation id)
whether it did. `quiesce` requires the freeze whenever an agent runs: a snapshot taken without it is removed again
and the step fails. A VM without an agent gets a crash-consistent snapshot, and is told so; a VM down is at rest.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace
from typing import Awaitable, Callable

from ..engine.cbt import freeze_outcome
from ..engine.connection import Engine, EngineError, EngineGaveUp
from ..engine.snapshots import SnapshotInfo, create_snapshot, list_snapshots, remove_snapshot, wait_ok
from ..engine.vms import VmInfo
from ..errors import BackupError
from ..objectstore import ObjectStore
from . import records
from ..retention import Rules
from .keeping import Snap, to_remove
from .ownership import BACKUP_PREFIX, correlation_of, describe, new_correlation_id
from .records import SnapshotRecord

log = logging.getLogger(__name__)

UNANSWERED = 86400.0  # seconds after which a creation whose answer was lost can no longer bring a snapshot

Say = Callable[[str], Awaitable[None]]


class SnapshotError(BackupError):
    template = "VM {vm}: {reason}"


@dataclass(frozen=True)
class Taken:
    snapshot: SnapshotInfo
    record: SnapshotRecord
    consistency: str  # "frozen", "not frozen", "freeze not reported", "at rest" (VM down), "crash-consistent (...)"


async def _quiet(_: str) -> None:
    return None


async def take(engine: Engine, store: ObjectStore, vm: VmInfo, *, purpose: str, by: str, policy: str = "",
               quiesce: bool = False, correlation_id: str | None = None, say: Say = _quiet) -> Taken:
    """One snapshot of the VM, ours: recorded, created, `ok` (each wait with its deadline). `correlation_id`: the
    caller's (a scheduled slot's request id, the same whoever fires it), else a new one."""
    running = vm.status == "up"
    cid = correlation_id or new_correlation_id()
    description = describe(purpose, cid)
    record = SnapshotRecord(vm.vm_id, cid, time.time(), by, policy)
    await records.save(store, record)
    try:
        snap = await create_snapshot(engine, vm.vm_id, description, correlation_id=cid)
    except EngineGaveUp:
        raise  # the engine away or busy: it may have made it with the answer lost, so the record stays (forget_gone)
    except EngineError:
        await records.forget(store, vm.vm_id, cid)  # refused: nothing was made
        raise
    record = replace(record, snapshot_id=snap.snapshot_id)
    await records.save(store, record)
    await say(f"VM {vm.name}: snapshot {snap.snapshot_id} ({description!r}) asked for; waiting for the engine")
    try:
        snap = await wait_ok(engine, vm.vm_id, snap.snapshot_id)
    except EngineError as e:
        raise SnapshotError(f"snapshot {snap.snapshot_id} was not created: {e}", vm=vm.name) from e
    consistency = "at rest" if not running else "crash-consistent (no guest agent)"
    if running and vm.guest_agent:
        freeze = await freeze_outcome(engine, cid)  # an engine that tells nothing of it is not taken for a failure
        consistency = {"frozen": "frozen", "failed": "not frozen"}.get(freeze or "", "freeze not reported")
    if quiesce and consistency == "not frozen":
        await say(f"VM {vm.name}: the engine could not freeze the guest's file systems; removing snapshot "
                  f"{snap.snapshot_id} again (quiesce was asked for)")
        await drop(engine, store, vm.vm_id, snap, record)
        raise SnapshotError(f"the engine could not freeze the guest's file systems for snapshot {snap.snapshot_id} "
                            "(its events on the VM say why): the snapshot was removed", vm=vm.name)
    return Taken(snap, record, consistency)


async def drop(engine: Engine, store: ObjectStore, vm_id: str, snap: SnapshotInfo,
               record: SnapshotRecord | None, *, force: bool = False) -> None:
    """Remove the snapshot and wait until the engine lists it no more, then its record. Only ours (`record` given)
    unless `force`: an administrator's explicit word for a snapshot olvm-backup did not make."""
    if record is None and not force:
        raise SnapshotError(f"snapshot {snap.snapshot_id} ({snap.description!r}) was not made by olvm-backup: it "
                            "is never removed unless asked with --force", vm=vm_id)
    prefix = BACKUP_PREFIX if record is not None else ""  # force: whatever its description
    await remove_snapshot(engine, vm_id, snap.snapshot_id, prefix=prefix,
                          correlation_id=record.correlation_id if record else None)
    if record is not None:
        await records.forget(store, vm_id, record.correlation_id)


def record_of(snap: SnapshotInfo, known: dict[str, SnapshotRecord]) -> SnapshotRecord | None:
    """Our record of the snapshot: its description's correlation id recorded for the VM (ownership.py)."""
    return known.get(correlation_of(snap.description) or "")


async def forget_gone(store: ObjectStore, vm_id: str, snaps: list[SnapshotInfo],
                      known: dict[str, SnapshotRecord], now: float | None = None) -> list[str]:
    """Forget the records of snapshots the engine no longer has (removed by hand, or with a revert to an older
    one). A record without a snapshot id (the engine's answer was lost) takes the id of the snapshot whose
    description carries its correlation id; one no snapshot carries is forgotten only once no creation could still
    be answered (UNANSWERED seconds). `known` is updated in place."""
    now = time.time() if now is None else now
    listed = {s.snapshot_id for s in snaps}
    by_cid = {c: s for s in snaps if (c := correlation_of(s.description))}
    gone = []
    for cid, r in list(known.items()):
        if r.snapshot_id is None and cid in by_cid:
            known[cid] = replace(r, snapshot_id=by_cid[cid].snapshot_id)
            await records.save(store, known[cid])
        elif (r.snapshot_id is not None and r.snapshot_id not in listed) or \
                (r.snapshot_id is None and now - r.at > UNANSWERED):
            gone.append(cid)
            del known[cid]
            await records.forget(store, vm_id, cid)
    return gone


async def ours_and_others(engine: Engine, store: ObjectStore, vm_id: str) \
        -> tuple[list[SnapshotInfo], dict[str, SnapshotRecord]]:
    """The VM's snapshots (oldest first) and our records of them, read side by side."""
    snaps, known = await asyncio.gather(list_snapshots(engine, vm_id), records.recorded(store, vm_id))
    return snaps, known


@dataclass(frozen=True)
class Kept:
    """What a policy's retention did on one VM: the snapshots removed, and those it could not remove (with why):
    still ours and recorded, they are tried again at the policy's next slot."""

    removed: list[SnapshotInfo]
    left: list[tuple[SnapshotInfo, str]]


async def keep_policy_snapshots(engine: Engine, store: ObjectStore, vm: VmInfo, policy: str, rules: Rules,
                                say: Say = _quiet) -> Kept:
    """Remove the policy's snapshots of the VM its rules no longer keep (keeping.py: only those the policy made;
    never a snapshot of a user, another policy or a backup), oldest first. One the engine will not remove now (a
    lock that lasts, a failed merge) does not stop the others."""
    snaps, known = await ours_and_others(engine, store, vm.vm_id)
    await forget_gone(store, vm.vm_id, snaps, known)
    doomed = set(to_remove([Snap(s.snapshot_id, s.description, s.date) for s in snaps], known, policy, rules))
    removed: list[SnapshotInfo] = []
    left: list[tuple[SnapshotInfo, str]] = []
    for snap in snaps:
        if snap.snapshot_id in doomed:
            await say(f"VM {vm.name}: removing snapshot {snap.snapshot_id} ({snap.description!r}): {rules.describe()} "
                      "no longer keeps it")
            try:
                await drop(engine, store, vm.vm_id, snap, record_of(snap, known))
            except EngineError as e:
                log.warning("VM %s: snapshot %s not removed (the next slot tries again): %s", vm.name,
                            snap.snapshot_id, e)
                await say(f"VM {vm.name}: snapshot {snap.snapshot_id} not removed: {e}")
                left.append((snap, str(e)))
                continue
            removed.append(snap)
    return Kept(removed, left)
