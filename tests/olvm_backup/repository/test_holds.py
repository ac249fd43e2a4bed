"""Holds on restore points: protection is an object that exists or not; an in-use marker is written before the
block runs, refreshed while it runs, deleted when it ends (normally, on an error, on cancellation), and a marker
no longer refreshed stops counting by itself."""
from __future__ import annotations

import asyncio
import json

import pytest

from olvm_backup.objectstore.memory import MemoryStore
from olvm_backup.repository import holds


async def markers(store: MemoryStore) -> dict[str, dict]:
    return {i.key: json.loads(await store.get(i.key)) async for i in store.list(holds.INUSE_PREFIX)}


async def test_protect_and_unprotect():
    store = MemoryStore()
    await holds.protect(store, "b1", "alice@host", "legal hold", now=lambda: 5.0)
    assert await holds.protected_ids(store) == {"b1"}
    assert json.loads(await store.get("protected/b1")) == {"v": [1, 0], "by": "alice@host", "at": 5.0,
                                                          "note": "legal hold"}
    assert await holds.unprotect(store, "b1") is True
    assert await holds.protected_ids(store) == set()
    assert await holds.unprotect(store, "b1") is False
    with pytest.raises(holds.HoldError, match="'b1/x' is not a restore point id"):
        await holds.protect(store, "b1/x", "alice@host")


async def test_the_marker_is_refreshed_while_held_and_removed_on_exit():
    store = MemoryStore()
    clock = [100.0]
    async with holds.holding(store, "b1", "verify", "alice@host", refresh=0.01, now=lambda: clock[0]) as key:
        assert key.startswith("inuse/b1/verify-")
        [(k, doc)] = (await markers(store)).items()
        assert doc == {"v": [1, 0], "what": "verify", "by": "alice@host", "alive_at": 100.0}
        clock[0] = 500.0
        for _ in range(100):
            await asyncio.sleep(0.01)
            if (await markers(store))[key]["alive_at"] == 500.0:
                break
        assert (await markers(store))[key]["alive_at"] == 500.0, "the marker was not refreshed"
        assert await holds.in_use_ids(store, now=500.0 + holds.HOLD_STALE) == {"b1"}
    assert await markers(store) == {}
    assert await holds.in_use_ids(store, now=500.0) == set()


async def test_the_marker_is_removed_on_an_error_and_on_cancellation():
    store = MemoryStore()
    with pytest.raises(RuntimeError, match="restore failed"):
        async with holds.holding(store, "b1", "restore", "alice@host"):
            assert await holds.in_use_ids(store) == {"b1"}
            raise RuntimeError("restore failed")
    assert await markers(store) == {}

    started = asyncio.Event()

    async def job() -> None:
        async with holds.holding(store, "b2", "export", "bob@host"):
            started.set()
            await asyncio.sleep(3600)
    task = asyncio.create_task(job())
    await started.wait()
    assert await holds.in_use_ids(store) == {"b2"}
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await markers(store) == {}


async def test_a_stale_marker_does_not_count_and_is_cleared_a_day_later():
    store = MemoryStore()
    # A process killed while holding b1: its marker stays, never refreshed again.
    await store.put("inuse/b1/restore-dead", json.dumps({"v": [1, 0], "what": "restore", "by": "x",
                                                         "alive_at": 1000.0}).encode())
    assert await holds.in_use_ids(store, now=1000.0 + holds.HOLD_STALE) == {"b1"}
    assert await holds.in_use_ids(store, now=1000.0 + holds.HOLD_STALE + 1) == set()
    # A marker that cannot be read holds (better kept than removed under a running job).
    await store.put("inuse/b2/restore-odd", b"not json")
    assert await holds.in_use_ids(store, now=10 ** 9) == {"b2"}
    assert await holds.clear_lapsed(store, now=1000.0 + 3600) == []
    assert await holds.clear_lapsed(store, now=1000.0 + 86401) == ["inuse/b1/restore-dead"]


async def test_an_unknown_use_is_refused_and_a_failed_write_fails_the_job():
    store = MemoryStore()
    with pytest.raises(holds.HoldError, match="'backup' is not a use"):
        async with holds.holding(store, "b1", "backup", "alice@host"):
            pass

    async def refuse(op: str, key: str, part: int | None) -> None:
        if op == "put_object":
            raise OSError("store down")
    store.before = refuse
    ran = False
    with pytest.raises(OSError, match="store down"):
        async with holds.holding(store, "b1", "restore", "alice@host"):
            ran = True
    assert not ran
