"""A restore holds its restore point in use from before it reads the catalog until it ends (prune keeps it
meanwhile), and lets go however it ends: here cancelled while the engine is making its VM."""
from __future__ import annotations

import asyncio

import pytest

from olvm_backup.config import Settings
from olvm_backup.objectstore.memory import MemoryStore
from olvm_backup.repository import holds
from services.restorer.job import RestoreJob
from tests.services.restorer.test_restore_undo import FakeEngine, FakeSystem, request, restore_point
from tests.twins import MemoryBus


async def test_a_running_restore_holds_its_restore_point_and_lets_go_when_it_ends():
    store, system = MemoryStore(), FakeSystem(hold="vm")
    await restore_point(store)
    async with FakeEngine(system) as engine:
        running = asyncio.create_task(RestoreJob(Settings(), engine, store, MemoryBus(), request()).run())
        assert await asyncio.to_thread(system.began.wait, 10), "the restore never asked for its VM"
        assert await holds.in_use_ids(store) == {"b1"}
        [key] = [i.key async for i in store.list(holds.INUSE_PREFIX)]
        assert key.startswith("inuse/b1/restore-")
        running.cancel()
        await asyncio.sleep(0.2)
        system.release.set()
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(30):
                await running
        await engine.call(lambda: None)
    assert [i.key async for i in store.list(holds.INUSE_PREFIX)] == []
    assert await holds.in_use_ids(store) == set()
