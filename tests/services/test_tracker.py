"""Waiting for a wave: done when every task has a result and every chunk it names is in a stored pack; a stall
names what is missing."""
from __future__ import annotations

import time

import pytest

from olvm_backup.chunkindex import ChunkIndex
from schemas import PackStored, TaskResult
from services.snapshotter.tracker import ReadersStalled, Tracker


def result(task: str, digests: list[str]) -> TaskResult:
    chunks = [(n * 1024, 1024, d) for n, d in enumerate(digests)]
    return TaskResult(backup_id="b1", task_id=task, disk_id="d1", offset=0, length=1024 * len(digests),
                      chunks=chunks, zeros=[], bytes_read=1024 * len(digests), bytes_new=0)


def pack(digests: list[str]) -> PackStored:
    return PackStored(pack_key="packs/p1", entries=[(d, 0, 10, 1024, "none") for d in digests], writer="w",
                      at=time.time())


async def progress(*_) -> None:
    pass


async def test_a_wave_is_done_once_its_chunks_are_stored():
    tracker = Tracker(ChunkIndex())
    tracker.expect("b1", {"t1"})
    tracker.on_result(result("t1", ["a" * 64, "b" * 64]))
    tracker.on_pack(pack(["a" * 64, "b" * 64]))
    await tracker.wait("b1", {"t1"}, stall_timeout=5, progress=progress)


async def test_a_stall_names_the_chunk_no_pack_holds():
    tracker = Tracker(ChunkIndex())
    tracker.expect("b1", {"t1", "t2"})
    tracker.on_result(result("t1", ["a" * 64, "b" * 64]))
    tracker.on_pack(pack(["a" * 64]))
    with pytest.raises(ReadersStalled) as stalled:
        await tracker.wait("b1", {"t1", "t2"}, stall_timeout=0.3, progress=progress)
    message = str(stalled.value)
    assert "1 task(s) without a result" in message
    assert "1 chunk(s) not yet in a stored pack (task t1 at 1024: " + "b" * 16 + ")" in message
