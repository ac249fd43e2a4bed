"""Waiting for a backup's read tasks: results from readers, durability from writers' pack records."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from olvm_backup.chunkindex import ChunkIndex
from olvm_backup.errors import BackupError
from schemas import PackStored, TaskResult


class ReadersStalled(BackupError):
    template = "backup {backup_id}: {reason}"


@dataclass
class _Job:
    expected: set[str]
    results: dict[str, TaskResult] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    last_progress: float = field(default_factory=time.monotonic)


class Tracker:
    def __init__(self, index: ChunkIndex) -> None:
        self._index = index
        self._jobs: dict[str, _Job] = {}

    def expect(self, backup_id: str, task_ids: set[str]) -> None:
        self._jobs[backup_id] = _Job(set(task_ids))

    def forget(self, backup_id: str) -> None:
        self._jobs.pop(backup_id, None)

    def on_result(self, result: TaskResult) -> None:
        job = self._jobs.get(result.backup_id)
        if job is None or result.task_id not in job.expected:
            return  # another snapshotter's backup, or a late duplicate of a finished one
        job.results[result.task_id] = result  # a redone task gives an equivalent result: last one wins
        job.last_progress = time.monotonic()
        job.changed.set()

    def on_pack(self, record: PackStored) -> None:
        self._index.add_record(record)
        for job in self._jobs.values():
            job.changed.set()

    def _missing_chunks(self, job: _Job) -> int:
        return sum(1 for r in job.results.values() for _, _, d in r.chunks if d not in self._index)

    async def wait(self, backup_id: str, *, stall_timeout: float,
                   progress: Callable[[TaskResult, int, int], Awaitable[None]]) -> dict[str, TaskResult]:
        """Until every task has a result and every chunk they name is durable; fails when nothing moves."""
        job = self._jobs[backup_id]
        reported: set[str] = set()
        while True:
            for task_id in list(job.results.keys() - reported):
                reported.add(task_id)
                await progress(job.results[task_id], len(reported), len(job.expected))
            if job.results.keys() >= job.expected and self._missing_chunks(job) == 0:
                return dict(job.results)
            job.changed.clear()
            idle = time.monotonic() - job.last_progress
            if idle > stall_timeout:
                waiting = len(job.expected - job.results.keys())
                raise ReadersStalled(
                    f"no progress for {stall_timeout:.0f}s: {waiting} task(s) without a result, "
                    f"{self._missing_chunks(job)} chunk(s) not yet in a stored pack (are readers and writers up?)",
                    backup_id=backup_id)
            try:
                await asyncio.wait_for(job.changed.wait(), timeout=min(5.0, stall_timeout - idle + 0.1))
            except asyncio.TimeoutError:
                pass
            else:
                job.last_progress = time.monotonic()
