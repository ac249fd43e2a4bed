"""The engine's incremental backup API (CBT): backups, checkpoints and the image transfers that read them.

Every resource opened here is a context manager whose exit finalizes or
cancels it on the engine, also on error and cancellation, so no backup stays
running, no transfer stays open and no disk stays locked.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import AsyncIterator

import ovirtsdk4.types as types

from ..retry import ENGINE, ENGINE_LOOKUP, ENGINE_START, ENGINE_TIDY, RetryPolicy
from .connection import Engine, EngineError, EngineGaveUp, EngineNotFound

log = logging.getLogger(__name__)

BACKUP_READY_DEADLINE = 600.0
BACKUP_FINAL_DEADLINE = 600.0
TRANSFER_DEADLINE = 300.0
CHECKPOINT_REMOVE_DEADLINE = 60.0
INACTIVITY_TIMEOUT = 900  # seconds a transfer may sit idle while its read tasks wait in the queue


@dataclass(frozen=True)
class BackupInfo:
    backup_id: str
    vm_id: str
    phase: str
    to_checkpoint: str | None
    from_checkpoint: str | None


@dataclass(frozen=True)
class TransferInfo:
    transfer_id: str
    disk_id: str
    transfer_url: str
    proxy_url: str | None


def _phase(value) -> str:
    return value.value if value is not None else "unknown"


def _backup_info(vm_id: str, b: types.Backup) -> BackupInfo:
    return BackupInfo(b.id, vm_id, _phase(b.phase), b.to_checkpoint_id, b.from_checkpoint_id)


@dataclass(frozen=True)
class CheckpointInfo:
    checkpoint_id: str
    parent_id: str | None
    state: str      # "created", or "invalid" once its bitmaps are lost: no backup can start from it
    created: float  # seconds since the epoch; 0 when the engine does not say


async def checkpoints(engine: Engine, vm_id: str, policy: RetryPolicy = ENGINE) -> list[CheckpointInfo]:
    """Every checkpoint the engine keeps for the VM, invalid ones too, in the engine's order."""
    items = await engine.call(lambda: engine.system.vms_service().vm_service(vm_id).checkpoints_service().list(),
                              what=f"list checkpoints of VM {vm_id}", policy=policy)
    return [CheckpointInfo(c.id, c.parent_id, _phase(c.state),
                           c.creation_date.timestamp() if c.creation_date is not None else 0.0) for c in items]


async def remove_checkpoint(engine: Engine, vm_id: str, checkpoint_id: str) -> None:
    """Remove a checkpoint and its bitmaps from every disk image, and wait until the engine lists it no more (the
    removal may go on after the call answers). One already gone counts as removed, so a retry is harmless."""
    svc = lambda: engine.system.vms_service().vm_service(vm_id).checkpoints_service().checkpoint_service(
        checkpoint_id)
    try:
        await engine.call(lambda: svc().remove(), what=f"remove checkpoint {checkpoint_id}", policy=ENGINE_TIDY)
        await engine.wait_for(lambda: svc().get(), lambda _: False, what=f"checkpoint {checkpoint_id} to go",
                              deadline=CHECKPOINT_REMOVE_DEADLINE)
    except EngineNotFound:
        pass


async def get_backup(engine: Engine, vm_id: str, backup_id: str) -> BackupInfo:
    b = await engine.call(lambda: engine.system.vms_service().vm_service(vm_id).backups_service()
                          .backup_service(backup_id).get(), what=f"read backup {backup_id}")
    return _backup_info(vm_id, b)


async def backup_disk_modes(engine: Engine, vm_id: str, backup_id: str) -> dict[str, str]:
    disks = await engine.call(lambda: engine.system.vms_service().vm_service(vm_id).backups_service()
                              .backup_service(backup_id).disks_service().list(), what="list backup disks")
    return {d.id: _phase(d.backup_mode) if d.backup_mode is not None else "full" for d in disks}


async def start_backup(engine: Engine, vm_id: str, disk_ids: list[str], from_checkpoint: str | None,
                       description: str, backup_id: str | None = None, require_consistency: bool = False) -> BackupInfo:
    """Start an engine backup; our own `backup_id` lets a journal name it before it exists, and is the request's
    correlation id (the engine's events of the backup carry it). With `require_consistency` the engine fails the
    backup if it cannot freeze the guest's file systems (4.4.4+; the parameter is sent only then, so older engines
    see the request they know)."""
    def add() -> types.Backup:
        return engine.system.vms_service().vm_service(vm_id).backups_service().add(types.Backup(
            id=backup_id, disks=[types.Disk(id=d) for d in disk_ids], from_checkpoint_id=from_checkpoint,
            description=description), require_consistency=True if require_consistency else None,
            query={"correlation_id": backup_id} if backup_id else None)

    b = await engine.call(add, what=f"start backup of VM {vm_id}", policy=ENGINE_START)
    return _backup_info(vm_id, b)


# The engine's audit log codes for a guest freeze (USER_FREEZE_VM_INITIATED, FAILED_TO_FREEZE_VM).
FREEZE_STARTED, FREEZE_FAILED = 10900, 10901


async def freeze_outcome(engine: Engine, correlation_id: str) -> str | None:
    """What the engine's events under a backup's correlation id say of the guest freeze: "failed", "frozen", or
    None when they say nothing of it, or cannot be read (this only tells, it never fails a backup)."""
    try:
        events = await engine.call(lambda: engine.system.events_service().list(
            search=f"correlation_id={correlation_id}", max=50), what="read the events of the backup",
            policy=ENGINE_LOOKUP)
    except EngineError as e:  # an outage too (EngineGaveUp): this look only informs
        log.warning("could not read the engine's events of backup %s: %s", correlation_id, e)
        return None
    codes = {e.code for e in events}
    if FREEZE_FAILED in codes:
        return "failed"
    return "frozen" if FREEZE_STARTED in codes else None


async def wait_ready(engine: Engine, vm_id: str, backup_id: str) -> BackupInfo:
    svc = lambda: engine.system.vms_service().vm_service(vm_id).backups_service().backup_service(backup_id)
    b = await engine.wait_for(lambda: svc().get(), lambda b: _phase(b.phase) == "ready",
                              failed=lambda b: f"backup {backup_id} failed" if _phase(b.phase) == "failed" else None,
                              what=f"backup {backup_id} to become ready", deadline=BACKUP_READY_DEADLINE)
    return _backup_info(vm_id, b)


async def finalize_backup(engine: Engine, vm_id: str, backup_id: str) -> str:
    """Stop the backup on the engine and wait for a final phase; returns it ("succeeded" or "failed")."""
    svc = lambda: engine.system.vms_service().vm_service(vm_id).backups_service().backup_service(backup_id)
    try:
        current = _phase((await engine.call(lambda: svc().get(), what="read backup")).phase)
    except EngineNotFound:
        return "gone"
    if current not in ("succeeded", "failed", "finalizing"):
        try:
            await engine.call(lambda: svc().finalize(), what=f"finalize backup {backup_id}")
        except EngineGaveUp:
            raise  # the engine is away, not answering: waiting on the phase would only spend another budget
        except EngineError as e:
            # Finalizing a backup that never got ready fails it on the engine, with a fault: that is fine.
            log.info("finalize of backup %s answered: %s", backup_id, e)
    b = await engine.wait_for(lambda: svc().get(), lambda b: _phase(b.phase) in ("succeeded", "failed"),
                              what=f"backup {backup_id} to finish", deadline=BACKUP_FINAL_DEADLINE)
    return _phase(b.phase)


@contextlib.asynccontextmanager
async def running_backup(engine: Engine, vm_id: str, disk_ids: list[str], from_checkpoint: str | None,
                         description: str, backup_id: str | None = None,
                         require_consistency: bool = False) -> AsyncIterator[BackupInfo]:
    backup = await start_backup(engine, vm_id, disk_ids, from_checkpoint, description, backup_id,
                                require_consistency)
    try:
        yield backup
    finally:
        await asyncio.shield(_finalize_quietly(engine, vm_id, backup.backup_id))


async def _finalize_quietly(engine: Engine, vm_id: str, backup_id: str) -> None:
    try:
        phase = await finalize_backup(engine, vm_id, backup_id)
        log.info("backup %s finished on the engine: %s", backup_id, phase)
    except Exception as e:  # cleanup must not hide the error that brought us here
        log.error("could not finalize backup %s: %s", backup_id, e)


async def open_transfer(engine: Engine, disk_id: str, backup_id: str | None, *, direction: str = "download",
                        inactivity_timeout: int = INACTIVITY_TIMEOUT, volume: str | None = None,
                        shallow: bool | None = None, correlation_id: str | None = None) -> TransferInfo:
    """A transfer of the disk (of an engine backup's view with `backup_id`), or of one of its volumes, a disk
    snapshot, with `volume`: the chain up to it, or with `shallow` that volume's own layer only."""
    service = lambda: engine.system.image_transfers_service()

    def add() -> types.ImageTransfer:
        return service().add(types.ImageTransfer(
            disk=types.Disk(id=disk_id) if volume is None else None,
            snapshot=types.DiskSnapshot(id=volume) if volume is not None else None, shallow=shallow,
            backup=types.Backup(id=backup_id) if backup_id else None,
            direction=types.ImageTransferDirection(direction), format=types.DiskFormat.RAW,
            inactivity_timeout=inactivity_timeout, timeout_policy=types.ImageTransferTimeoutPolicy.CANCEL),
            query={"correlation_id": correlation_id} if correlation_id else None)

    of = f"disk {disk_id}" if volume is None else f"volume {volume} of disk {disk_id}" + (" (its layer only)"
                                                                                        if shallow else "")
    t = await engine.call(add, what=f"open a {direction} transfer of {of}", policy=ENGINE_START)
    try:
        t = await engine.wait_for(
            lambda: service().image_transfer_service(t.id).get(),
            lambda x: _phase(x.phase) == "transferring",
            failed=lambda x: None if _phase(x.phase) in ("initializing", "transferring", "resuming")
            else f"transfer went to {_phase(x.phase)}",
            what=f"transfer {t.id} to start", deadline=TRANSFER_DEADLINE)
    except BaseException:
        await asyncio.shield(cancel_transfer(engine, t.id))
        raise
    return TransferInfo(t.id, disk_id, t.transfer_url, t.proxy_url)


async def finalize_transfer(engine: Engine, transfer_id: str) -> str:
    svc = lambda: engine.system.image_transfers_service().image_transfer_service(transfer_id)
    await engine.call(lambda: svc().finalize(), what=f"finalize transfer {transfer_id}")
    try:
        t = await engine.wait_for(lambda: svc().get(), lambda x: _phase(x.phase).startswith("finished"),
                                  what=f"transfer {transfer_id} to finish", deadline=TRANSFER_DEADLINE)
    except EngineNotFound:
        return "gone"
    phase = _phase(t.phase)
    if phase != "finished_success":
        raise EngineError(f"transfer {transfer_id} ended {phase}")
    return phase


async def cancel_transfer(engine: Engine, transfer_id: str) -> bool:
    """True once the transfer has ended (or is gone); False, logged, when the engine could not be made to end it:
    whoever holds it open (a job's journal) must try again later."""
    svc = lambda: engine.system.image_transfers_service().image_transfer_service(transfer_id)
    try:
        phase = _phase((await engine.call(lambda: svc().get(), what="read transfer")).phase)
        # A finalizing transfer is already ending (the engine refuses to cancel it): only wait for it.
        if not phase.startswith(("finished", "cancelled", "finalizing")):
            await engine.call(lambda: svc().cancel(), what=f"cancel transfer {transfer_id}")
        await engine.wait_for(lambda: svc().get(), lambda x: _phase(x.phase).startswith("finished"),
                              what=f"transfer {transfer_id} to stop", deadline=TRANSFER_DEADLINE)
    except EngineNotFound:
        pass
    except Exception as e:  # cleanup must not hide the error that brought us here
        log.error("could not cancel transfer %s: %s", transfer_id, e)
        return False
    return True
