"""Waiting for a backup's read tasks: results from readers, durability from writers' pack records."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from olvm_backup.repository.chunkindex import ChunkIndex
from olvm_backup.errors import BackupError
from schemas import PackStored, StoreFault, TaskResult, TransferGone


# Seconds every result of a wave may be in while the count of its chunks in no stored pack stays the same, before
# `heal` is asked to look for skipped records (then again each time as long).
HEAL_AFTER = 10.0
# Seconds between two store faults told to one backup: a writer the store keeps refusing restarts and fails again.
FAULTS_EVERY = 30.0


class ReadersStalled(BackupError):
    template = "backup {backup_id}: {reason}"


@dataclass
class _Job:
    expected: set[str]
    results: dict[str, TaskResult] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    all_read: asyncio.Event = field(default_factory=asyncio.Event)  # every expected task has its result
    reported: set[str] = field(default_factory=set)
    last_progress: float = field(default_factory=time.monotonic)
    fault: StoreFault | None = None  # the latest from a writer about a pack with this backup's chunks
    fault_untold: bool = False
    fault_told_at: float = float("-inf")
    gone: list[TransferGone] = field(default_factory=list)  # reports not yet given to a wait's `lost`


class Tracker:
    def __init__(self, index: ChunkIndex) -> None:
        self._index = index
        self._jobs: dict[str, _Job] = {}

    def expect(self, backup_id: str, task_ids: set[str]) -> None:
        self._jobs[backup_id] = _Job(set(task_ids))

    def forget(self, backup_id: str) -> None:
        self._jobs.pop(backup_id, None)

    def on_result(self, result: TaskResult | TransferGone) -> None:
        job = self._jobs.get(result.backup_id)
        if job is None or result.task_id not in job.expected:
            return  # another snapshotter's backup, or a late duplicate of a finished one
        if isinstance(result, TransferGone):
            if result.task_id not in job.results:  # else a late copy of a task read before its transfer ended
                job.gone.append(result)
                job.changed.set()
            return
        job.results[result.task_id] = result  # a redone task gives an equivalent result: last one wins
        job.last_progress = time.monotonic()
        job.changed.set()
        if job.results.keys() >= job.expected:
            job.all_read.set()

    def on_fault(self, fault: StoreFault) -> None:
        """Not progress: a writer the store refuses must not hold a stalled backup open. `wait` tells it."""
        for backup_id in fault.backup_ids:
            job = self._jobs.get(backup_id)
            if job is not None:
                job.fault, job.fault_untold = fault, True

    async def all_read(self, backup_id: str) -> None:
        """Until every task of the backup has its result: from then on nothing of its disks is read again (the
        chunks still on their way to packs are in their topics). Stalls are `wait`'s to report."""
        await self._jobs[backup_id].all_read.wait()

    def on_pack(self, record: PackStored) -> None:
        self._index.add_record(record)
        for job in self._jobs.values():
            job.changed.set()

    def _missing_chunks(self, job: _Job, tasks: set[str]) -> list[tuple[str, int, str]]:
        """(task, offset, digest) of the chunks the tasks' results name that no stored pack holds yet."""
        return [(t, offset, d) for t in sorted(tasks & job.results.keys())
                for offset, _, d in job.results[t].chunks if d not in self._index]

    def results(self, backup_id: str) -> dict[str, TaskResult]:
        return dict(self._jobs[backup_id].results)

    async def wait(self, backup_id: str, tasks: set[str], *, stall_timeout: float,
                   progress: Callable[[TaskResult, int, int], Awaitable[None]],
                   heal: Callable[[set[str]], Awaitable[None]] | None = None,
                   fault: Callable[[StoreFault], Awaitable[None]] | None = None,
                   lost: Callable[[list[TransferGone]], Awaitable[None]] | None = None) -> None:
        """Until each of `tasks` has a result and every chunk they name is durable; fails when nothing moves.
        `progress` is called once per result of the backup, whichever wait sees it first. `heal` is given the
        digests still in no stored pack once every result is in and their count has not moved for HEAL_AFTER.
        `fault` is given the writers' store faults about the backup, at most one per FAULTS_EVERY. `lost` is given,
        at once, the readers' reports of a gone transfer on any task of the backup still without a result: it sends
        those tasks again (progress) or raises."""
        job = self._jobs[backup_id]
        stuck: tuple[int, float] | None = None  # (chunks in no stored pack, since when) once every result is in
        while True:
            job.changed.clear()  # before looking: whatever comes in while we look (or heal) wakes the wait below
            for task_id in list(job.results.keys() - job.reported):
                job.reported.add(task_id)
                await progress(job.results[task_id], len(job.reported), len(job.expected))
            await self._tell_faults(job, fault)
            if lost is not None and job.gone:
                reports, job.gone = [r for r in job.gone if r.task_id not in job.results], []
                if reports:
                    await lost(reports)
                    job.last_progress = time.monotonic()
                continue  # look again at once: reports may have come while `lost` worked
            missing = self._missing_chunks(job, tasks)
            if job.results.keys() >= tasks:
                if not missing:
                    return
                if stuck is None or stuck[0] != len(missing):
                    stuck = (len(missing), time.monotonic())
                elif heal is not None and time.monotonic() - stuck[1] >= HEAL_AFTER:
                    await heal({d for _, _, d in missing})
                    stuck = (len(missing), time.monotonic())
                    continue  # look again at once: the heal may have found what was missing
            idle = time.monotonic() - job.last_progress
            if idle > stall_timeout:
                waiting = len(tasks - job.results.keys())
                named = "; ".join(f"task {t} at {offset}: {d[:16]}" for t, offset, d in missing[:3])
                raise ReadersStalled(
                    f"no progress for {stall_timeout:.0f}s: {waiting} task(s) without a result, "
                    f"{len(missing)} chunk(s) not yet in a stored pack{' (' + named + ')' if named else ''} "
                    + (f"(the object store refused a pack of it: {job.fault.error})" if job.fault
                       else "(are readers and writers up?)"), backup_id=backup_id)
            next_heal = HEAL_AFTER - (time.monotonic() - stuck[1]) if heal is not None and stuck else 5.0
            try:
                await asyncio.wait_for(job.changed.wait(),
                                       timeout=max(0.01, min(5.0, stall_timeout - idle + 0.1, next_heal)))
            except asyncio.TimeoutError:
                pass
            else:
                job.last_progress = time.monotonic()

    @staticmethod
    async def _tell_faults(job: _Job, tell: Callable[[StoreFault], Awaitable[None]] | None) -> None:
        if job.fault is None or not job.fault_untold:
            return
        job.fault_untold = False
        if tell is not None and time.monotonic() - job.fault_told_at >= FAULTS_EVERY:
            job.fault_told_at = time.monotonic()
            await tell(job.fault)
