"""Waiting for a wave: done when every task has a result and every chunk it names is in a stored pack; a stall
names what is missing."""
from __future__ import annotations

import asyncio
import time

import pytest

from olvm_backup.repository.chunkindex import ChunkIndex
from schemas import PackStored, StoreFault, TaskResult, TransferGone
from services.snapshotter import tracker as tracker_module
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


async def test_a_wave_whose_chunks_stop_coming_is_healed(monkeypatch):
    monkeypatch.setattr(tracker_module, "HEAL_AFTER", 0.2)
    tracker = Tracker(ChunkIndex())
    tracker.expect("b1", {"t1"})
    tracker.on_result(result("t1", ["a" * 64, "b" * 64, "c" * 64]))
    tracker.on_pack(pack(["a" * 64]))
    asked: list[set[str]] = []

    async def heal(digests: set[str]) -> None:
        asked.append(digests)
        if len(asked) == 2:  # the first look finds nothing to do (writers still busy); the second re-sends
            tracker.on_pack(pack(["b" * 64, "c" * 64]))

    started = time.monotonic()
    await tracker.wait("b1", {"t1"}, stall_timeout=30, progress=progress, heal=heal)
    assert asked == [{"b" * 64, "c" * 64}] * 2
    assert time.monotonic() - started < 5, "each heal comes HEAL_AFTER after the last, not at the stall timeout"


async def test_no_heal_while_results_are_missing_or_chunks_keep_coming(monkeypatch):
    monkeypatch.setattr(tracker_module, "HEAL_AFTER", 0.3)
    tracker = Tracker(ChunkIndex())
    tracker.expect("b1", {"t1", "t2"})
    tracker.on_result(result("t1", ["a" * 64]))
    asked: list[set[str]] = []

    async def heal(digests: set[str]) -> None:
        asked.append(digests)

    async def feed() -> None:
        await asyncio.sleep(0.5)  # t2 has no result meanwhile: nothing to heal
        tracker.on_result(result("t2", ["b" * 64, "c" * 64, "d" * 64]))
        for digest in ("a", "b", "c", "d"):  # then a chunk stored every 0.2 s: the wave moves, no heal
            await asyncio.sleep(0.2)
            tracker.on_pack(pack([digest * 64]))

    feeding = asyncio.create_task(feed())
    await tracker.wait("b1", {"t1", "t2"}, stall_timeout=30, progress=progress, heal=heal)
    await feeding
    assert asked == []


def fault(backups: list[str], error: str) -> StoreFault:
    return StoreFault(writer="writer@h:1", backup_ids=backups, chunks=3, error=error, at=time.time())


async def test_store_faults_are_told_at_most_every_so_often_and_are_no_progress(monkeypatch):
    """A writer the store keeps refusing restarts and fails again: the backup hears of it once per FAULTS_EVERY,
    and still stalls (quoting the store's answer) instead of waiting for ever."""
    monkeypatch.setattr(tracker_module, "FAULTS_EVERY", 0.5)
    tracker = Tracker(ChunkIndex())
    tracker.expect("b1", {"t1"})
    tracker.expect("b2", {"t9"})
    tracker.on_result(result("t1", ["a" * 64]))
    told: list[tuple[float, str]] = []

    async def tell(f: StoreFault) -> None:
        told.append((time.monotonic(), f.error))

    async def refuse_again_and_again() -> None:
        for n in range(12):
            tracker.on_fault(fault(["b1", "b2"], f"object store: packs/x: InternalError (HTTP 500) #{n}"))
            await asyncio.sleep(0.1)

    started = time.monotonic()
    refusing = asyncio.create_task(refuse_again_and_again())
    with pytest.raises(ReadersStalled) as stalled:
        await tracker.wait("b1", {"t1"}, stall_timeout=1.5, progress=progress, fault=tell)
    await refusing
    assert time.monotonic() - started < 8, "faults held the stalled backup open"
    assert 1 <= len(told) <= 4, told
    assert all(b - a >= 0.5 for (a, _), (b, _) in zip(told, told[1:], strict=False)), told
    assert "the object store refused a pack of it: object store: packs/x: InternalError (HTTP 500) #11" \
        in str(stalled.value)
    tracker.on_fault(fault(["gone"], "for a backup nobody waits on"))  # ignored, no error


def gone(task: str, url: str = "https://host:54322/images/t1") -> TransferGone:
    return TransferGone(backup_id="b1", task_id=task, disk_id="d1", transfer_url=url, error="answered 403",
                        reader="reader@h:1", at=time.time())


async def test_a_gone_transfer_is_handed_over_at_once_not_at_the_stall_timeout():
    tracker = Tracker(ChunkIndex())
    tracker.expect("b1", {"t1", "t2"})
    tracker.on_result(result("t1", ["a" * 64]))
    tracker.on_pack(pack(["a" * 64, "b" * 64]))
    handed: list[list[str]] = []

    async def lost(reports: list[TransferGone]) -> None:
        handed.append([r.task_id for r in reports])
        tracker.on_result(result("t2", ["b" * 64]))  # the task, sent again, is read

    async def report() -> None:
        await asyncio.sleep(0.2)
        tracker.on_result(gone("t1"))  # a late copy of a task already read: not handed over
        tracker.on_result(gone("t2"))

    reporting = asyncio.create_task(report())
    started = time.monotonic()
    await tracker.wait("b1", {"t1", "t2"}, stall_timeout=30, progress=progress, lost=lost)
    await reporting
    assert handed == [["t2"]]
    assert time.monotonic() - started < 5


async def test_what_lost_raises_ends_the_wait():
    tracker = Tracker(ChunkIndex())
    tracker.expect("b1", {"t1"})
    tracker.on_result(gone("t1"))

    async def lost(reports: list[TransferGone]) -> None:
        raise RuntimeError("disk d1: no other transfer")

    with pytest.raises(RuntimeError, match="no other transfer"):
        await asyncio.wait_for(tracker.wait("b1", {"t1"}, stall_timeout=30, progress=progress, lost=lost), 5)
