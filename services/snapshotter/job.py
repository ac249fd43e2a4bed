"""One CBT backup of one VM, from request to committed manifest.

Order (schemas/FORMAT.md): engine backup ready -> transfers open -> read tasks
published -> every result in and every chunk durable -> OVF written ->
manifest committed (the restore point exists) -> transfers finalized ->
engine backup finalized. Whatever fails, the `finally` blocks close what was
opened on the engine.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from olvm_backup.repository import catalog, gc
from olvm_backup.repository.catalog import manifest_key
from olvm_backup.repository.chunkindex import ChunkIndex
from olvm_backup.config import Settings
from olvm_backup.engine import Engine, EngineError, EngineGaveUp
from olvm_backup.engine import cbt
from olvm_backup.engine.connection import waits_told_to
from olvm_backup.engine.snapshots import SnapshotInfo, list_snapshots, remove_snapshot
from olvm_backup.engine.vms import DiskInfo, VmInfo, find_vm, vm_disks, vm_ovf
from olvm_backup.errors import BackupError, ObjectNotFound
from olvm_backup.format.chunks import CHUNK_HASH
from olvm_backup.format.manifest import DiskRecord, Location, Manifest
from olvm_backup.imageio import Transfer
from olvm_backup.kafka import Bus
from olvm_backup.objectstore import ObjectStore
from olvm_backup.planning import Extent
from olvm_backup.stack.space import check_room
from olvm_backup.concurrency import side_by_side
from schemas import BackupEvent, BackupRequest, ReadTask, StoreFault, TaskResult
from schemas.topics import BACKUP_EVENTS, READ_TASKS

from . import outcome
from .chain import DiskPlan, build_map, choose_checkpoint, plan_disk, select_disks
from .commands import BackupCommands, request_specs
from .journal import PREFIX as JOURNALS
from .journal import Journal, JournalEntry, abandoned, decode_journal, process_name, snapshots_left
from .layers import backup_of, ours, snapshot_prefix
from .plan import OpenDisk, plan_reads
from .quiesce import Consistency, plan_consistency
from .reopen import Reopener
from .steps import StepTimes
from .tidy import tidy_checkpoints
from .tracker import Tracker
from .waves import ChunkTopics

if TYPE_CHECKING:
    from .gate import Marking

log = logging.getLogger(__name__)


@dataclass
class Context:
    settings: Settings
    engine: Engine
    store: ObjectStore
    bus: Bus
    tracker: Tracker
    index: ChunkIndex
    chunk_hash: str = CHUNK_HASH  # how new chunks are named: keyed in an encrypted repository (ChunkCodec)


class BackupJob:
    def __init__(self, ctx: Context, request: BackupRequest, *, marking: Marking | None = None) -> None:
        self.ctx = ctx
        self.request = request
        self.backup_id = str(uuid.uuid4())
        self.vm_name = request.vm
        self.started = time.monotonic()
        self.bytes_total = 0
        self.steps = StepTimes()
        self.consistency: Consistency | None = None  # of the guest's file systems, once the engine backup is ready
        self.journal: Journal | None = None  # once saved: what the job holds open on the engine
        self.marking = marking  # the request's marker (once.py): written at the start and before the final event
        self.commands: BackupCommands | None = None  # the request's pre/post commands (commands.py)

    async def event(self, kind: str, message: str, **fields) -> None:
        await self.ctx.bus.publish(BACKUP_EVENTS, BackupEvent(
            request_id=self.request.request_id, backup_id=self.backup_id, vm=self.vm_name, kind=kind,
            message=message, at=time.time(), **fields), key=self.request.request_id)

    async def run(self) -> Manifest | None:
        """Never raises for a failed backup (it is reported as an event); re-raises cancellation."""
        try:
            await self._mark("running")
            await self.event("accepted", f"backup of {self.request.vm} ({self.request.mode}) accepted")
            self.commands = BackupCommands(request_specs(self.request, self.ctx.settings), steps=self.steps,
                                           event=self.event, env=self._command_env)
            with waits_told_to(lambda text: self.event("progress", text)):
                manifest = await self._run()
        except asyncio.CancelledError:
            # Only its snapshotter stopping cancels a job: the request was not committed and runs again from the
            # start when a snapshotter takes it, whose run sends the request's one final event. Not "cancelled".
            with contextlib.suppress(Exception):
                await asyncio.shield(self._interrupted())
            raise
        except Exception as e:
            log.exception("backup %s of %s failed", self.backup_id, self.request.vm) if not isinstance(
                e, BackupError) else log.error("backup %s of %s failed: %s", self.backup_id, self.request.vm, e)
            step = self.steps.failed_in(e)  # which step failed: the error alone may not tell (a spent retry budget)
            left = await self._hand_over("failed")
            await self._commands_ended("failed")
            await self._mark("failed")
            await self.event("failed", (f"{step}: {e}" if step else str(e)) + left, outcome=outcome.failed(
                e, self.steps, time.monotonic() - self.started, self.consistency))
            return None
        # Sent once the transfers and the engine backup are closed too, not at the commit.
        await self._commands_ended("completed")
        await self._mark("completed")  # before the event: a redelivery after it is never run again
        done = outcome.completed(manifest, self.steps, time.monotonic() - self.started, self.consistency)
        await self.event("completed", outcome.summary(self.backup_id, self.vm_name, done), outcome=done,
                         bytes_total=self.bytes_total, bytes_done=self.bytes_total)
        return manifest

    async def _mark(self, state) -> None:
        if self.marking is not None:
            await self.marking.mark(self.backup_id, state)

    async def _hand_over(self, ended: str) -> str:
        """Once the job has ended: its journal goes if nothing it opened is left on the engine; else it stays, marked
        ended, and the janitor (this snapshotter's too, every SWEEP_EVERY) closes the rest once the engine answers.
        Returns what to add to the job's last word: "" when the engine is clean."""
        journal = self.journal
        if journal is None:
            return ""  # it ended before it opened anything on the engine
        try:
            if await journal.hand_over(self.ctx.engine, ended):
                return ""
        except Exception as e:  # the store is away: this process still knows the job ended (journal.py)
            log.error("backup %s: could not hand its journal over: %s", self.backup_id, e)
        entry = journal.entry
        left = [f"transfer {t}" for t in entry.transfers] + ([f"backup {entry.engine_backup}"]
                                                            if entry.engine_backup else [])
        left += [f"snapshot {s}" for s in snapshots_left(entry)]
        if not left:
            return ""  # all closed; only the journal's deletion waits for the store (the janitor does it)
        return (f"; the engine did not close what this backup holds open ({', '.join(left)}): the snapshotter "
                "closes it as soon as the engine answers")

    async def _interrupted(self) -> None:
        left = await self._hand_over("interrupted")
        await self._commands_ended("interrupted")  # an application held by a `before` is let go meanwhile
        await self.event("progress", f"backup {self.backup_id} interrupted: the snapshotter is stopping{left}; the "
                         "request runs again from the start when a snapshotter takes it",
                         detail={"interrupted": self.backup_id})

    def _command_env(self) -> dict[str, str]:
        """What a pre/post command is told of its backup (README "Pre/post commands")."""
        return {"OLVM_VM": self.vm_name, "OLVM_BACKUP_ID": self.backup_id, "OLVM_REQUEST_ID": self.request.request_id,
                "OLVM_STRATEGY": self.request.strategy}

    async def _commands_before(self) -> None:
        """The `before` commands, right before the engine is asked to freeze the guest (a backup's checkpoint, a
        snapshot); the first failing one fails the backup, with nothing asked of the engine yet."""
        if self.commands:
            self.commands.journal = self.journal
            await self.commands.before()

    async def _commands_after(self) -> None:
        """The `after` commands, as soon as the checkpoint or snapshot is taken (the engine thawed the guest)."""
        if self.commands:
            await self.commands.after()

    async def _commands_ended(self, result: str) -> None:
        if self.commands:
            try:
                await self.commands.ended(result)
            except Exception as e:  # the bus is away: the backup's end is said all the same
                log.error("backup %s: its after commands could not be said: %s", self.backup_id, e)

    async def _run(self) -> Manifest:
        ctx, request = self.ctx, self.request
        vm, disks, excluded = await self._vm_and_disks()
        with self.steps.step("prepare"):
            previous = None if request.mode == "full" else await catalog.latest(ctx.store, vm.vm_id)
            engine_checkpoints = await cbt.checkpoints(ctx.engine, vm.vm_id) if previous else []
            from_checkpoint, full_reason = choose_checkpoint(request.mode, previous, engine_checkpoints,
                                                           ctx.chunk_hash)
            if request.mode == "incremental" and from_checkpoint is None:
                await self.event("progress", f"incremental not possible, backing up full: {full_reason}")
            journal = Journal(ctx.store, JournalEntry(self.backup_id, vm.vm_id, request.request_id,
                                                      engine_backup=self.backup_id, owner=process_name()))
            self.journal = journal
            await journal.save()  # before the engine backup exists: a crash from here on is cleaned up
            await self._exclude_condemned()
        heartbeat = asyncio.create_task(journal.keep_alive(), name=f"journal {self.backup_id}")
        try:
            manifest = await self._with_engine_backup(vm, disks, excluded, previous, from_checkpoint, full_reason,
                                                      journal)
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            self.ctx.tracker.forget(self.backup_id)
        await journal.close()
        # Before "completed": a next backup asked for on completion would find the VM locked by the removals.
        await tidy_checkpoints(ctx.engine, vm.vm_id, manifest.to_checkpoint, lambda text: self.event("progress", text))
        # A VM switched from the snapshot strategy: the snapshot its last such restore point kept goes too.
        await self._remove_our_snapshots(vm.vm_id)
        return manifest

    async def _vm_and_disks(self) -> tuple[VmInfo, list[DiskInfo], list[DiskInfo]]:
        """The VM asked for, its disks to back up and those excluded; BackupError when none is left."""
        with self.steps.step("prepare"):
            vm = await find_vm(self.ctx.engine, self.request.vm)
            self.vm_name = vm.name
            disks, excluded = select_disks(await vm_disks(self.ctx.engine, vm.vm_id), self.request.exclude_disks)
            if not disks:
                raise BackupError(f"VM {vm.name} has no disk to back up (all {len(excluded)} excluded)")
        return vm, disks, excluded

    async def _stays(self, snapshot: SnapshotInfo) -> bool:
        """Whether a snapshot in the form of ours is not this backup's to remove: another backup that made it still
        runs (the same VM asked for by another name goes to another snapshotter), or nothing in the repository names
        it, neither a journal nor a restore point of the VM (anyone can type our form of description in the
        administration portal). A journal that cannot be read counts as running: the janitor decides later. This
        backup's own (a twin of its snapshot) is never another's."""
        backup_id = backup_of(snapshot.description)
        if backup_id == self.backup_id:
            return False
        key = f"{JOURNALS}{backup_id}.json"
        try:
            entry = decode_journal(await self.ctx.store.get(key), key)
        except ObjectNotFound:
            if await self.ctx.store.head(manifest_key(snapshot.vm_id, backup_id)):
                return False
            log.warning("backup %s: snapshot %s (%r) left alone: no restore point or journal of this repository "
                        "names its backup", self.backup_id, snapshot.snapshot_id, snapshot.description)
            return True
        except Exception as e:
            log.warning("backup %s: snapshot %s left alone, its backup's journal cannot be read: %s", self.backup_id,
                        snapshot.snapshot_id, e)
            return True
        return not abandoned(entry, time.time())

    async def _remove_our_snapshots(self, vm_id: str, keep: str | None = None) -> bool:
        """Once this backup's restore point is committed: every snapshot the snapshot strategy made on the VM but
        `keep` (this backup's own, when it made one). That is the parent's kept one and any a failed cleanup left;
        after a CBT backup, the snapshot a restore point of the snapshot strategy kept, which no incremental starts
        from any more. False when some could not go now (the snapshot strategy's journal keeps naming the parent's
        for the janitor; the next backup of the VM tries again)."""
        removed: list[str] = []
        try:
            older = [s for s in ours(await list_snapshots(self.ctx.engine, vm_id)) if s.snapshot_id != keep]
            if older:  # a step only when there is one: a CBT backup's steps are otherwise what they were
                with self.steps.step("remove older snapshots"):
                    for s in older:
                        if not await self._stays(s):
                            await remove_snapshot(self.ctx.engine, vm_id, s.snapshot_id,
                                                  prefix=snapshot_prefix(backup_of(s.description) or "?"),
                                                  correlation_id=self.backup_id)
                            removed.append(s.snapshot_id)
        except Exception as e:
            log.warning("backup %s: could not remove the older snapshots of VM %s: %s", self.backup_id, vm_id, e)
            await self.event("progress", f"could not remove the older snapshot(s) of ours from the engine ({e}); "
                             "the snapshotter tries again later")
            return False
        if removed:
            stays = f"; snapshot {keep} stays for the next incremental" if keep else ""
            await self.event("progress", f"removed {len(removed)} older snapshot(s) of ours from VM {self.vm_name}: "
                             f"{', '.join(removed)}{stays}")
        return True

    async def _exclude_condemned(self) -> None:
        """After the journal is visible (garbage collection waits for the backups it lists): packs a collection
        condemned are not deduplicated against (schemas/FORMAT.md, "Garbage collection")."""
        ctx = self.ctx
        dropped, back = ctx.index.exclude(await gc.condemned_packs(ctx.store))
        if dropped or back:  # and where a repack may have moved chunks, or what a spared pack holds
            learned = await ctx.index.refresh(ctx.store)
            log.info("backup %s: %d chunks in packs being garbage-collected are not deduplicated against, "
                     "%d spared pack(s) back (%d pack indexes read)", self.backup_id, dropped, back, learned)

    async def _with_engine_backup(self, vm, disks, excluded, previous, from_checkpoint, full_reason,
                                  journal: Journal) -> Manifest:
        ctx = self.ctx
        description = f"olvm-backup {self.backup_id} (request {self.request.request_id})"
        created_at = time.time()
        consistency = plan_consistency(self.request.quiesce, vm.status, vm.guest_agent)
        await self._commands_before()
        asked = time.monotonic()
        async with self.steps.entering("engine start", cbt.running_backup(
                ctx.engine, vm.vm_id, [d.disk_id for d in disks], from_checkpoint, description,
                backup_id=self.backup_id, require_consistency=consistency.require)) as started:
            try:
                with self.steps.blame("engine start"):
                    try:
                        backup = await cbt.wait_ready(ctx.engine, vm.vm_id, started.backup_id)
                        modes = await cbt.backup_disk_modes(ctx.engine, vm.vm_id, backup.backup_id)
                    except EngineError as e:
                        # The hint only where it helps: the engine's events say the freeze failed (not a backup
                        # stuck on its way to ready, nor an engine away, where those events cannot be read).
                        if consistency.require and not isinstance(e, EngineGaveUp) and \
                                await cbt.freeze_outcome(ctx.engine, self.backup_id) == "failed":
                            raise BackupError(f"{e}: the engine could not freeze the guest's file systems (its "
                                              "events on the VM say so) and this backup required them frozen; a "
                                              "backup with --no-quiesce goes on without them frozen") from e
                        raise
            finally:
                self.steps.add("engine start", time.monotonic() - asked)
            await self._commands_after()
            plans = [plan_disk(d, modes.get(d.disk_id, "full"), previous, from_checkpoint, full_reason)
                     for d in disks]
            self.consistency = consistency.outcome(
                await cbt.freeze_outcome(ctx.engine, self.backup_id) if consistency.ask_engine else None)
            await self.event("started", self._plan_summary(plans, excluded), detail={
                "from_checkpoint": from_checkpoint, "to_checkpoint": backup.to_checkpoint,
                "disks": {p.disk.name: ("incremental" if p.incremental else f"full: {p.reason}") for p in plans},
                "excluded": [d.name for d in excluded], "consistency": self.consistency.says})
            async with contextlib.AsyncExitStack() as transfers:
                # The OVF is read while the transfers start (the engine thread is free between its polls).
                ovf, results = await side_by_side(
                    vm_ovf(ctx.engine, vm.vm_id),
                    self._read_disks(vm.vm_id, plans, backup.backup_id, transfers, journal))
                with self.steps.step("commit"):
                    manifest = await self._commit(vm, plans, excluded, results, ovf, backup, previous, created_at)
            await journal.save()
        return manifest

    def _plan_summary(self, plans: list[DiskPlan], excluded) -> str:
        inc = sum(p.incremental for p in plans)
        text = f"backing up {len(plans)} disk(s) of {self.vm_name}: {inc} incremental, {len(plans) - inc} full"
        return text + (f"; excluded: {', '.join(d.name for d in excluded)}" if excluded else "")

    async def _read_disks(self, vm_id: str, plans: list[DiskPlan], engine_backup: str,
                          transfers: contextlib.AsyncExitStack, journal: Journal) -> dict[str, list[TaskResult]]:
        """Every disk read and its chunks stored; the transfers and the engine backup finished as soon as every
        task is read (the caller's exit stack cancels the transfers, and running_backup ends the engine backup,
        if anything fails first)."""
        ctx, pipeline = self.ctx, self.ctx.settings.pipeline
        # Entered before the transfers, so left after them: on failure readers lose their transfer first and
        # stop reading, then the topics go (a reader still publishing then gets TopicGone and gives up).
        topics = await transfers.enter_async_context(ChunkTopics(ctx.settings.kafka, self.backup_id))
        by_id = {p.disk.disk_id: p for p in plans}

        async def open_journaled(disk_id: str) -> cbt.TransferInfo:
            transfer = await self._open_transfer(by_id[disk_id], engine_backup)
            # Registered as soon as it is open (no await in between): a failed sibling cancels this task, and
            # the exit stack then cancels this transfer on the engine.
            journal.entry.transfers.append(transfer.transfer_id)
            transfers.push_async_callback(self._cancel_if_open, journal, transfer.transfer_id)
            return transfer

        with self.steps.step("open transfers"):
            # One transfer per disk, opened side by side: each takes the engine a few polls to start.
            infos = await side_by_side(*(open_journaled(plan.disk.disk_id) for plan in plans))
            await journal.save()
        with self.steps.step("extents"):
            # imageio's, side by side, a step of their own (not the engine's): over a big thin disk they walk its
            # metadata. An extents request does not count as activity on a ticket, so each is timed against the
            # transfers' inactivity timeout.
            opened = await side_by_side(*(self._probe(plan, info) for plan, info in zip(plans, infos, strict=True)))
        reads = plan_reads(self.backup_id, opened, task_size=pipeline.task_size,
                           tasks_at_once=ctx.settings.kafka.partitions, wave_bytes=pipeline.wave_bytes)
        for disk in opened:
            log.info("disk %s: imageio allows %d readers, %d read tasks at once: %d connections per task",
                     disk.plan.disk.name, disk.max_readers, ctx.settings.kafka.partitions,
                     reads.connections[disk.plan.disk.disk_id])
        self.bytes_total = reads.bytes_total
        # Before a byte is read: an embedded store whose disk fills mid-backup answers only "500 Internal Error".
        await asyncio.to_thread(check_room, ctx.settings, reads.bytes_to_read)
        ctx.tracker.expect(self.backup_id, reads.task_ids)
        sent: dict[str, ReadTask] = {}  # every task published, as last published

        async def reopen(disk_id: str, old: cbt.TransferInfo) -> cbt.TransferInfo:
            await self._cancel_if_open(journal, old.transfer_id)  # the engine may not have noticed the loss yet
            new = await open_journaled(disk_id)
            await journal.save()
            return new

        async def resend(disk_id: str, transfer: cbt.TransferInfo) -> int:
            read = ctx.tracker.results(self.backup_id)
            again = [t for t in sent.values() if t.disk_id == disk_id and t.task_id not in read]
            for task in again:
                sent[task.task_id] = task = task.model_copy(update={"transfer_url": transfer.transfer_url,
                                                                    "proxy_url": transfer.proxy_url})
                await ctx.bus.publish(READ_TASKS, task)
            return len(again)

        # A disk's ticket lost mid-backup (readers report it): its transfer re-opened and its tasks sent again.
        reopener = Reopener(opened, reopen=reopen, resend=resend, tell=lambda text: self.event("progress", text))
        done = {"bytes": 0}

        async def progress(result: TaskResult, finished: int, total: int) -> None:
            done["bytes"] += result.length
            await self.event("progress", f"task {finished}/{total} stored", bytes_total=self.bytes_total,
                             bytes_done=done["bytes"], detail={"task_id": result.task_id,
                                                               "bytes_read": result.bytes_read,
                                                               "bytes_new": result.bytes_new})

        async def store_fault(fault: StoreFault) -> None:
            await self.event("progress", f"the object store refused a pack of {fault.writer} ({fault.error}); its "
                             f"{fault.chunks} chunk(s) go to a writer again once it is restarted",
                             detail={"store_fault": fault.error, "writer": fault.writer})

        async def finish(wave: tuple[str, set[str]]) -> None:
            topic, task_ids = wave
            with self.steps.blame("read and store"):
                await ctx.tracker.wait(self.backup_id, task_ids, stall_timeout=pipeline.stall_timeout,
                                       progress=progress, fault=store_fault, lost=reopener.on_lost,
                                       heal=lambda digests: self._resend_lost(topics, topic, digests))
            await topics.close(topic)

        # Waves bound the chunks the broker holds: the next wave is published once an earlier one is stored.
        in_flight: deque[tuple[str, set[str]]] = deque()
        reading = time.monotonic()
        for w, members in enumerate(reads.waves):
            if len(in_flight) >= max(1, pipeline.waves_in_flight):
                await finish(in_flight.popleft())
            topic = await topics.open(w)
            task_ids = set()
            for task in (reads.tasks[i].record(self.backup_id, pipeline.chunk_size, topic,
                                               reopener.transfer(reads.tasks[i].disk.plan.disk.disk_id))
                         for i in members):
                sent[task.task_id] = task
                await ctx.bus.publish(READ_TASKS, task)  # no key: the partitions in turn, one reader after another
                task_ids.add(task.task_id)
            in_flight.append((topic, task_ids))

        async def drain() -> None:
            try:
                while in_flight:
                    await finish(in_flight.popleft())
            finally:
                self.steps.add("read and store", time.monotonic() - reading)

        async def release_engine() -> None:
            # With every task read, the engine is not needed until the commit: the transfers and the engine
            # backup end while the writers seal the last packs. (A task redelivered after this finds its ticket
            # gone; its reader's report is ignored, as its result is in already.)
            await ctx.tracker.all_read(self.backup_id)
            with self.steps.step("engine release"):
                await side_by_side(*(self._finalize_transfer(journal, t) for t in list(journal.entry.transfers)))
                await self._end_engine_backup(vm_id, engine_backup)

        await side_by_side(drain(), release_engine())
        by_disk: dict[str, list[TaskResult]] = {p.disk.disk_id: [] for p in plans}
        for result in ctx.tracker.results(self.backup_id).values():
            by_disk[result.disk_id].append(result)
        return by_disk

    async def _resend_lost(self, topics: ChunkTopics, topic: str, digests: set[str]) -> None:
        """Chunks of a wave that every result names but no stored pack holds. Once the writers are done with the
        wave's topic, a writer skipped them: they are sent again from the topic (waves.py). One that is not in the
        topic may be in a pack whose record never came: the store's index objects tell."""
        try:
            sent = await topics.resend_lost(self.ctx.bus, topic, digests)
            if sent is None:
                log.info("backup %s: %d chunk(s) of %s not in a stored pack yet; the writers are still at it",
                         self.backup_id, len(digests), topic)
                return
            if sent:
                log.warning("backup %s: %d chunk(s) of %s were in no stored pack although the writers had committed "
                            "the whole topic (a skipped record): sent again from the topic", self.backup_id, len(sent),
                            topic)
                await self.event("progress", f"{len(sent)} chunk(s) a writer skipped sent again from {topic}")
            if lost := digests - sent:
                await self.ctx.index.refresh(self.ctx.store)
                if lost := {d for d in lost if d not in self.ctx.index}:
                    log.error("backup %s: %d chunk(s) of %s are neither in a stored pack nor in the topic (lost "
                              "before the broker kept them), e.g. %s", self.backup_id, len(lost), topic,
                              min(lost)[:16])
                else:
                    log.warning("backup %s: chunks of %s were in stored packs whose records never came",
                                self.backup_id, topic)
        except Exception as e:  # the stall timeout stays the judge: a failed look is only logged
            log.warning("backup %s: could not look for skipped chunks in %s: %s", self.backup_id, topic, e)

    async def _probe(self, plan: DiskPlan, transfer: cbt.TransferInfo) -> OpenDisk:
        """The disk's extents to read and its ticket's max_readers, over one connection closed at once: an idle
        one would hold one of the ticket's NBD connections."""
        engine = self.ctx.settings.engine
        async with Transfer(transfer.transfer_url, transfer.proxy_url, ca_file=engine.ca_file,
                            insecure=engine.insecure, local_socket=engine.imageio_local_socket,
                            connections=1) as imageio:
            asked = time.monotonic()
            extents = await self._extents(plan, imageio)
            took = time.monotonic() - asked
        log.info("backup %s: disk %s: %d extents from imageio in %.2f s", self.backup_id, plan.disk.name, len(extents),
                 took)
        if took > cbt.INACTIVITY_TIMEOUT / 2:  # the ticket sat idle meanwhile: the other disks' transfers too
            await self.event("progress", f"disk {plan.disk.name}: imageio took {took:.0f} s for its extents, over half "
                             f"the transfers' inactivity timeout ({cbt.INACTIVITY_TIMEOUT} s)")
        return OpenDisk(plan, transfer, extents, imageio.max_readers)

    # What the snapshot strategy (snapjob.py) does its own way: how a disk's transfer opens, what of it is read, how
    # the engine's side ends once every task is read.

    async def _open_transfer(self, plan: DiskPlan, engine_backup: str | None) -> cbt.TransferInfo:
        return await cbt.open_transfer(self.ctx.engine, plan.disk.disk_id, engine_backup)

    async def _extents(self, plan: DiskPlan, imageio: Transfer) -> list[Extent]:
        return await imageio.extents(plan.incremental)

    async def _end_engine_backup(self, vm_id: str, engine_backup: str | None) -> None:
        phase = await cbt.finalize_backup(self.ctx.engine, vm_id, engine_backup)
        if phase != "succeeded":
            raise BackupError(f"the engine ended backup {engine_backup} {phase}: its checkpoint is not one "
                              "to build on, so this restore point is not committed")

    def _manifest_fields(self) -> dict:
        """The manifest's fields a strategy adds."""
        return {}

    async def _finalize_transfer(self, journal: Journal, transfer_id: str) -> None:
        await cbt.finalize_transfer(self.ctx.engine, transfer_id)
        journal.entry.transfers.remove(transfer_id)

    async def _cancel_if_open(self, journal: Journal, transfer_id: str) -> None:
        if transfer_id in journal.entry.transfers:
            # One the engine would not cancel stays in the journal: the janitor closes it later.
            if await asyncio.shield(cbt.cancel_transfer(self.ctx.engine, transfer_id)):
                journal.entry.transfers.remove(transfer_id)

    async def _commit(self, vm, plans, excluded, results, ovf, backup, previous, created_at) -> Manifest:
        ctx = self.ctx
        records = []
        for plan in plans:
            disk_results = results[plan.disk.disk_id]
            d = plan.disk
            records.append(DiskRecord(
                disk_id=d.disk_id, name=d.name, size=d.size, format=d.format, interface=d.interface,
                bootable=d.bootable, active=d.active, sparse=d.sparse, storage_domain=d.storage_domain,
                mode="incremental" if plan.incremental else "full", reason=plan.reason,
                map=build_map(plan, disk_results), bytes_read=sum(r.bytes_read for r in disk_results),
                bytes_new=sum(r.bytes_new for r in disk_results), logical_name=d.logical_name,
                volume=plan.volume, layers=list(plan.layers)))
        chunks: dict[str, Location] = {}
        for record in records:
            for digest in record.map.digests():
                where = ctx.index.get(digest) or (previous.chunks.get(digest) if previous else None)
                if where is None:
                    raise BackupError(f"chunk {digest} of disk {record.name} has no stored copy: not committing")
                chunks[digest] = where
        # The commit check of garbage collection's protocol: never a manifest naming a pack that is going.
        condemned = await gc.condemned_packs(ctx.store)
        doomed = sorted({loc.pack_key for loc in chunks.values()} & condemned)
        if doomed:
            ctx.index.exclude(condemned)
            raise BackupError(f"not committing: {len(doomed)} pack(s) it deduplicated against are being "
                              f"garbage-collected ({doomed[0]}); run the backup again, it stores those chunks anew")
        ovf_key = await catalog.write_ovf(ctx.store, vm.vm_id, self.backup_id, ovf)
        manifest = Manifest(
            backup_id=self.backup_id, vm_id=vm.vm_id, vm_name=vm.name,
            mode="incremental" if any(p.incremental for p in plans) else "full",
            created_at=created_at, completed_at=time.time(), to_checkpoint=backup.to_checkpoint,
            from_checkpoint=backup.from_checkpoint, parent_backup=previous.backup_id if previous else None,
            ovf_key=ovf_key, request_id=self.request.request_id, requested_by=self.request.requested_by,
            disks=records, chunks=chunks, excluded_disks=[d.name for d in excluded], vm=vm.details,
            consistency=self.consistency.code if self.consistency else "", chunk_hash=ctx.chunk_hash,
            **self._manifest_fields())
        await catalog.commit(ctx.store, manifest)
        await self.event("stored", f"restore point {self.backup_id} committed", bytes_total=self.bytes_total,
                         bytes_done=self.bytes_total)
        return manifest  # "completed" is sent by run(), once the transfers and the engine backup are closed too
