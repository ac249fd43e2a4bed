"""A hypervisor-snapshots policy run by the active scheduler (in process, on a driven clock) against the simulator:
over a simulated week of daily slots with keep-last 3, three of its snapshots remain on the engine, the newest three,
while a user's snapshot of the same VM is untouched; no backup is requested, and each slot's run is told on
backup.events (started, completed with what it removed)."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from datetime import datetime, timedelta, timezone

import pytest

from olvm_backup.config import load_settings
from olvm_backup.objectstore.memory import MemoryStore
from olvm_backup.policy.model import Policy, Schedule
from olvm_backup.policy.schedule import slot_text
from olvm_backup.policy.status import summary
from olvm_backup.policy.store import save_policy
from olvm_backup.retention import Rules
from olvm_backup.snapshots import records
from schemas import decode
from schemas.topics import BACKUP_EVENTS, BACKUP_REQUESTS
from services.scheduler.clock import Clock
from services.scheduler.main import Leader
from tests.sim.conftest import engine_snapshots, module_sim, user_snapshot, vm_by_name
from tests.sim_engine import engine_settings
from tests.twins import MemoryBus

DAY0 = datetime(2024, 3, 4, tzinfo=timezone.utc)  # a Monday
DAILY = Schedule(name="daily", cron="0 3 * * *")


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    yield from module_sim(tmp_path_factory)


def published(bus: MemoryBus, topic) -> list:
    return [decode(s.value, topic.records) for s in bus.published[bus.topic_name(topic)]]


async def test_a_week_of_daily_snapshots_with_keep_last_3_leaves_the_newest_three_and_the_users(sim, caplog):
    caplog.set_level(logging.INFO, logger="services.scheduler.snapshotting")
    user = await asyncio.to_thread(user_snapshot, sim, "db1", "before the upgrade")
    settings = dataclasses.replace(load_settings(environ={"OLVM_GC_SCHEDULE": ""}), engine=engine_settings(sim))
    store, bus = MemoryStore(), MemoryBus()
    now = [DAY0]
    clock = Clock(start=0.0, speed=1.0, epoch=0.0, real=lambda: now[0].timestamp())
    policy = Policy(name="snaps", kind="hypervisor-snapshots", vms=["db1"], schedules=[DAILY],
                    retention=Rules(last=3))
    await save_policy(store, bus, policy, "alice@host")
    leader = Leader(settings, store, bus, clock, "scheduler@test")
    slots = [DAY0 + timedelta(days=d, hours=3) for d in range(7)]
    try:
        await leader.tick()  # the schedule first seen: it starts now
        for day, slot in enumerate(slots):
            if day == 4:  # the host fails that day's merge: the snapshot stays ours, the next slot removes it
                await asyncio.to_thread(sim.fault, "snapshot-remove-fail")
            now[0] = slot + timedelta(minutes=1)
            await leader.tick()
            await asyncio.wait_for(leader.snapshots.wait(), 120)
        ok, said = summary(leader.status.to_doc(now[0], time.time()), time.time())
        # The last slot fired again (a failover before its state was written): its snapshot is recorded, none more.
        leader._state = leader._state.with_fired("snaps", "daily", slots[-2])
        await leader.tick()
        await asyncio.wait_for(leader.snapshots.wait(), 120)
    finally:
        await leader._close()

    left = await asyncio.to_thread(engine_snapshots, sim, "db1")
    assert left.pop(user) == "before the upgrade"  # the user's snapshot, untouched
    assert sorted(text.split(" [")[0] for text in left.values()) == \
        [f"olvm-backup policy snaps {slot_text(s)}" for s in slots[-3:]]
    recorded = await records.recorded(store, await asyncio.to_thread(vm_id, sim, "db1"))
    assert {r.snapshot_id for r in recorded.values()} == set(left)  # the removed ones' records went with them

    assert published(bus, BACKUP_REQUESTS) == []  # a snapshot policy asks for no backup
    events = [e for e in published(bus, BACKUP_EVENTS) if e.detail.get("job") == "hypervisor-snapshot"]
    done = [e for e in events if e.kind == "completed"]
    assert len(done) == 7 and not [e for e in events if e.kind == "failed"]
    assert len({e.request_id for e in done}) == 7
    assert "policy snaps: snapshot of VM db1 for slot 2024-03-10T03:00Z was taken already (fired again)" in caplog.text
    assert [len(e.detail["removed"]) for e in done] == [0, 0, 0, 1, 0, 2, 1]
    assert "could not remove" in done[4].message and len(done[4].detail["not_removed"]) == 1
    assert all(e.detail["policy"] == "snaps" and e.detail["consistency"] == "at rest" for e in done)
    assert "removed 1 older (keep-last 3)" in done[-1].message
    assert ok and "last snapshots snaps 2024-03-10T03:01:00+00:00 (1 taken, 1 removed)" in said  # `status`


def vm_id(sim, name: str) -> str:
    conn = sim.connect()
    try:
        return vm_by_name(conn, name).id
    finally:
        conn.close()
