"""One backup of the snapshot strategy ("disk image transfer") of one VM, from request to committed manifest.

Order: journal saved naming the snapshot to come -> VM snapshot `ok` (the guest frozen for it when asked and
possible) -> each disk's volume in it, and per disk a full or the volume layers written since our kept snapshot
(layers.py: each layer's own ranges from a `shallow` transfer) -> one transfer per disk snapshot -> read tasks ->
every chunk durable -> OVF (the snapshot's) written -> manifest committed -> journal says committed -> the
snapshots of ours older than the new one removed, so one stays per VM. Until the commit any failure removes the new
snapshot (BackupJob.run hands the journal over; a killed process's journal goes to the janitor): a VM never keeps
more than the snapshot its newest restore point needs. No snapshot another user or tool made is removed, merged
or reverted: only ours, by their description.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from types import SimpleNamespace

from olvm_backup.concurrency import side_by_side
from olvm_backup.engine import cbt, snapshots
from olvm_backup.errors import BackupError
from olvm_backup.format.manifest import Manifest
from olvm_backup.imageio import Transfer
from olvm_backup.planning import Extent
from olvm_backup.repository import catalog

from .chain import DiskPlan
from .job import BackupJob
from .journal import Journal, JournalEntry, process_name
from .layers import STRATEGY, choose_base, disk_layers, held_ranges, snapshot_description, within
from .quiesce import Consistency, plan_consistency

log = logging.getLogger(__name__)

_NO_CHECKPOINTS = SimpleNamespace(to_checkpoint=None, from_checkpoint=None)


class SnapshotBackupJob(BackupJob):
    """BackupJob's events, reads, commit and cleanup, around a VM snapshot instead of an engine backup."""

    snapshot_id: str | None = None
    description: str = ""
    _held: dict[str, list[tuple[int, int]]]

    async def _run(self) -> Manifest:
        ctx, request = self.ctx, self.request
        self._held = {}
        vm, disks, excluded = await self._vm_and_disks()
        with self.steps.step("prepare"):
            latest = await catalog.latest(ctx.store, vm.vm_id)
            previous = None if request.mode == "full" else latest
            on_engine = await snapshots.list_snapshots(ctx.engine, vm.vm_id)
            kept, full_reason = choose_base(request.mode, previous, on_engine, ctx.chunk_hash)
            if request.mode == "incremental" and kept is None:
                await self.event("progress", f"incremental not possible, backing up full: {full_reason}")
            # The snapshot the newest restore point keeps: removed once this one's is committed (a full too).
            older = latest.snapshot_id if latest is not None and latest.strategy == STRATEGY else None
            self.description = snapshot_description(self.backup_id, request.request_id)
            journal = Journal(ctx.store, JournalEntry(self.backup_id, vm.vm_id, request.request_id,
                                                      owner=process_name(), snapshot_of=self.description,
                                                      previous_snapshot=older or ""))
            self.journal = journal
            await journal.save()  # before the snapshot is asked for: a crash from here on is cleaned up
            await self._exclude_condemned()
        heartbeat = asyncio.create_task(journal.keep_alive(), name=f"journal {self.backup_id}")
        try:
            manifest = await self._with_snapshot(vm, disks, excluded, previous, kept, full_reason, journal)
            # Under the heartbeat: a removal behind a lock can take minutes, and a journal left unrefreshed that long
            # would look abandoned to the other snapshotters' janitors.
            removed = await self._remove_our_snapshots(vm.vm_id, keep=self.snapshot_id)
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            self.ctx.tracker.forget(self.backup_id)
        if removed:
            journal.entry.previous_snapshot = ""
            await journal.close()
        else:  # the janitor removes what is left (journal.py); the restore point stands either way
            journal.entry.ended = "completed"
            with contextlib.suppress(Exception):  # the store is away: the journal as last saved names it too
                await journal.save()
        return manifest

    async def _with_snapshot(self, vm, disks, excluded, previous, kept, full_reason, journal: Journal) -> Manifest:
        ctx = self.ctx
        created_at = time.time()
        consistency = plan_consistency(self.request.quiesce, vm.status, vm.guest_agent)
        await self._commands_before()  # the pre/post commands wrap the snapshot
        with self.steps.step("engine start"):
            snap = await snapshots.create_snapshot(ctx.engine, vm.vm_id, self.description,
                                                   correlation_id=self.backup_id, disk_ids=[d.disk_id for d in disks])
            self.snapshot_id = journal.entry.snapshot = snap.snapshot_id
            await journal.save()
            await snapshots.wait_ok(ctx.engine, vm.vm_id, snap.snapshot_id)
        await self._commands_after()
        with self.steps.step("engine start"):
            freeze = await cbt.freeze_outcome(ctx.engine, self.backup_id) if consistency.ask_engine else None
            if consistency.require and freeze == "failed":
                raise BackupError(f"snapshot {snap.snapshot_id}: the engine could not freeze the guest's file "
                                  "systems (its events on the VM say so) and this backup required them frozen; a "
                                  "backup with --no-quiesce goes on without them frozen")
            self.consistency = _of_snapshot(consistency.outcome(freeze))
            plans = await self._plan(vm.vm_id, disks, previous, kept, full_reason, snap.snapshot_id)
        await self.event("started", self._plan_summary(plans, excluded), detail={
            "strategy": STRATEGY, "snapshot": snap.snapshot_id,
            "from_snapshot": kept.snapshot_id if kept else None,
            "disks": {p.disk.name: (f"incremental: {len(p.layers)} layer(s)" if p.incremental else f"full: {p.reason}")
                      for p in plans},
            "excluded": [d.name for d in excluded], "consistency": self.consistency.says})
        async with contextlib.AsyncExitStack() as transfers:
            ovf, results = await side_by_side(
                snapshots.snapshot_ovf(ctx.engine, vm.vm_id, snap.snapshot_id),
                self._read_disks(vm.vm_id, plans, None, transfers, journal))
            with self.steps.step("commit"):
                manifest = await self._commit(vm, plans, excluded, results, ovf, _NO_CHECKPOINTS, previous,
                                              created_at)
                journal.entry.committed = True  # in memory first: a failure from here on keeps the new snapshot
                await journal.save()
        return manifest

    async def _plan(self, vm_id: str, disks, previous: Manifest | None, kept, full_reason: str,
                    snapshot_id: str) -> list[DiskPlan]:
        """Per disk: the new snapshot's volume, and for an incremental the layers since the kept snapshot and the
        ranges they hold (a disk's layers' `shallow` transfers one after another, the disks side by side, all before
        the disks' own transfers open)."""
        engine = self.ctx.engine
        new_volumes = await snapshots.snapshot_volumes(engine, vm_id, snapshot_id)
        kept_volumes = await snapshots.snapshot_volumes(engine, vm_id, kept.snapshot_id) if kept else {}

        async def one(d) -> DiskPlan:
            if d.disk_id not in new_volumes:
                raise BackupError(f"snapshot {snapshot_id} of VM {self.vm_name} holds no volume of disk {d.name}")
            parent = next((r for r in previous.disks if r.disk_id == d.disk_id), None) if previous else None
            chain = await snapshots.disk_chain(engine, d.disk_id) if kept and parent else []
            plan = disk_layers(d.name, new_volumes[d.disk_id], kept_volumes.get(d.disk_id), chain,
                               parent is not None, kept, full_reason)
            if plan.incremental:
                self._held[d.disk_id] = held_ranges([await self._layer_ranges(d.disk_id, v) for v in plan.layers])
            return DiskPlan(d, plan.incremental, plan.reason, parent if plan.incremental else None,
                            volume=plan.volume, layers=plan.layers)

        return await side_by_side(*(one(d) for d in disks))

    async def _layer_ranges(self, disk_id: str, volume: str) -> list[tuple[int, int]]:
        """The ranges one volume layer holds, from a `shallow` transfer of it, journaled while open."""
        ctx, journal = self.ctx, self.journal
        assert journal is not None
        transfer = await cbt.open_transfer(ctx.engine, disk_id, None, volume=volume, shallow=True,
                                           correlation_id=self.backup_id)
        journal.entry.transfers.append(transfer.transfer_id)
        try:
            await journal.save()
            engine = ctx.settings.engine
            async with Transfer(transfer.transfer_url, transfer.proxy_url, ca_file=engine.ca_file,
                                insecure=engine.insecure, local_socket=engine.imageio_local_socket,
                                connections=1) as imageio:
                ranges = await imageio.held_ranges()
            await self._finalize_transfer(journal, transfer.transfer_id)
        finally:
            await self._cancel_if_open(journal, transfer.transfer_id)
        log.info("backup %s: layer %s of disk %s holds %d bytes in %d range(s)", self.backup_id, volume, disk_id,
                 sum(n for _, n in ranges), len(ranges))
        return ranges

    async def _open_transfer(self, plan: DiskPlan, engine_backup: str | None) -> cbt.TransferInfo:
        return await cbt.open_transfer(self.ctx.engine, plan.disk.disk_id, None, volume=plan.volume, shallow=False,
                                       correlation_id=self.backup_id)

    async def _extents(self, plan: DiskPlan, imageio: Transfer) -> list[Extent]:
        """The snapshot's view of the disk (data, or reads as zeros); for an incremental only where its layers hold
        something."""
        view = await imageio.extents(False)
        return within(view, self._held[plan.disk.disk_id]) if plan.incremental else view

    async def _end_engine_backup(self, vm_id: str, engine_backup: str | None) -> None:
        pass  # no engine backup: the snapshot stays, for the next incremental

    def _manifest_fields(self) -> dict:
        return {"strategy": STRATEGY, "snapshot_id": self.snapshot_id, "snapshot_description": self.description}


def _of_snapshot(consistency: Consistency) -> Consistency:
    """What the backup says of its guest's file systems, said of its snapshot rather than a checkpoint."""
    return replace(consistency, says=consistency.says.replace("for the checkpoint", "for the snapshot"))
