"""The active scheduler's housekeeping in process, against the in-memory twins (MemoryStore, MemoryBus): a policy
is pruned once its slot's backups have all ended, not before; gc runs once per OLVM_GC_SCHEDULE slot, its state
surviving a new leader; a long gc does not hold the tick, and lost leadership cancels it."""
from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from olvm_backup.config import load_settings
from olvm_backup.policy.model import Policy, Schedule
from olvm_backup.policy.selection import VmView
from olvm_backup.policy.status import SchedulerStatus, summary
from olvm_backup.policy.store import save_policy
from olvm_backup.repository import catalog, gc
from olvm_backup.retention import Rules
from schemas import BackupEvent, Topic, decode
from schemas.topics import BACKUP_REQUESTS, REPOSITORY_EVENTS
from services.scheduler.clock import Clock
from services.scheduler.housekeeper import GcState, Housekeeper, load_gc_state, save_gc_state
from services.scheduler.main import Leader
from services.scheduler.slots import slot_step
from services.scheduler.state import SchedulerState
from tests.olvm_backup.repository.test_gc import Repo, block
from tests.twins import MemoryBus

UTC = timezone.utc
HOURLY = Schedule(name="hourly", cron="0 * * * *", mode="incremental", window_minutes=30)
VMS = [VmView("web1", "web1", "c1", frozenset()), VmView("db1", "db1", "c1", frozenset())]
GOLD = Policy(name="gold", vms=["web1"], schedules=[HOURLY], retention=Rules(last=1))
SILVER = Policy(name="silver", vms=["db1"], schedules=[HOURLY], retention=Rules(last=1))


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2024, 3, 1, tzinfo=UTC) + timedelta(hours=hour, minutes=minute)


class FakeTime:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def clock(self) -> Clock:
        return Clock(start=0.0, speed=1.0, epoch=0.0, real=lambda: self.now.timestamp())


def published(bus: MemoryBus, topic: Topic) -> list:
    return [decode(s.value, topic.records) for s in bus.published[bus.topic_name(topic)]]


def points(bus: MemoryBus, action: str) -> list:
    return [e for e in published(bus, REPOSITORY_EVENTS) if e.action == action]


async def ids(repo: Repo, vm: str) -> list[str]:
    return sorted(m.backup_id for m in await catalog.list_manifests(repo.store) if m.vm_id == vm)


async def test_a_policy_is_pruned_once_its_slots_backups_have_ended_and_not_while_they_run():
    repo, bus, t = Repo(), MemoryBus(), FakeTime(at(2, 1))
    for i in range(3):  # three restore points a day apart per VM (Repo's all say they ended at the same time)
        for vm, backup_id, blocks in (("web1", f"w{i}", [block(0), block(10 + i)]),
                                      ("db1", f"d{i}", [block(1), block(20 + i)])):
            m = await repo.point(vm, backup_id, blocks)
            await catalog.commit(repo.store, replace(m, completed_at=at(-72 + 24 * i).timestamp()))
    for policy in (GOLD, SILVER):
        await save_policy(repo.store, bus, policy, "alice@host")
    leader = Leader(load_settings(environ={"OLVM_GC_SCHEDULE": ""}), repo.store, bus, t.clock(), "scheduler@test")
    state = SchedulerState().with_fired("gold", "hourly", at(1)).with_fired("silver", "hourly", at(1))
    leader._state = state
    await leader.fire(slot_step([GOLD, SILVER], VMS, state, t.now, grace=timedelta(minutes=2)))
    requests = {r.vm: r.request_id for r in published(bus, BACKUP_REQUESTS)}
    assert set(requests) == {"web1", "db1"}
    hk = leader.housekeeper
    hk.on_event(BackupEvent(request_id=requests["web1"], vm="web1", kind="completed", at=0.0))
    hk.on_event(BackupEvent(request_id=requests["db1"], vm="db1", kind="started", at=0.0))
    await hk.tick([GOLD, SILVER], t.now)
    await asyncio.gather(*hk.prunes.values())
    assert await ids(repo, "web1") == ["w2"]  # keep-last 1: the older restore points are gone
    assert await ids(repo, "db1") == ["d0", "d1", "d2"]  # its backup still runs: not yet
    pruned = points(bus, "pruned")
    assert sorted(e.backup_id for e in pruned) == ["w0", "w1"]
    assert {(e.actor, e.reason, e.detail["policy"]) for e in pruned} == {("scheduler", "keep-last 1", "gold")}
    assert leader.status.prunes["gold"]["removed"] == 2 and "silver" not in leader.status.prunes

    hk.on_event(BackupEvent(request_id=requests["db1"], vm="db1", kind="failed", at=0.0))
    await hk.tick([GOLD, SILVER], t.now)
    await asyncio.gather(*hk.prunes.values())
    assert await ids(repo, "db1") == ["d2"]
    assert len(points(bus, "pruned")) == 4
    await hk.tick([GOLD, SILVER], t.now)
    assert not hk.prunes  # once per slot
    doc = leader.status.to_doc(t.now, time.time())
    ok, words = summary(doc, time.time())
    assert ok and "last prune gold 2024-03-01T02:01:00+00:00 (2 removed), silver" in words


async def test_gc_runs_once_per_slot_and_its_state_survives_a_new_leader():
    repo, bus, t = Repo(), MemoryBus(), FakeTime(at(1, 10))
    await repo.point("web1", "w0", [block(0)])
    settings = load_settings(environ={"OLVM_GC_SCHEDULE": "0 * * * *"})

    async def tick(hk: Housekeeper, when: datetime) -> None:
        t.now = when
        await hk.tick([], when)
        if hk.gc_task is not None:
            await hk.gc_task

    first = Housekeeper(settings, repo.store, bus, t.clock(), SchedulerStatus("a", t.now))
    await tick(first, at(1, 10))  # the schedule first seen: starts now
    await tick(first, at(1, 59))
    assert points(bus, "gc") == []
    await tick(first, at(2, 1))
    assert len(points(bus, "gc")) == 1 and points(bus, "gc")[0].actor == "scheduler"
    await tick(first, at(2, 5))
    second = Housekeeper(settings, repo.store, bus, t.clock(), SchedulerStatus("b", t.now))  # a new leader
    await tick(second, at(2, 20))
    assert len(points(bus, "gc")) == 1  # not twice
    await tick(second, at(5, 3))  # three slots missed while no scheduler ran: done once
    assert len(points(bus, "gc")) == 2
    assert (await load_gc_state(repo.store)).last_slot == at(5)
    await tick(second, at(5, 40))
    assert len(points(bus, "gc")) == 2
    ok, words = summary(second.status.to_doc(t.now, time.time()), time.time())
    assert ok and "last gc 2024-03-01T05:03:00+00:00" in words and "next gc 2024-03-01T06:00:00+00:00" in words


async def test_a_long_gc_does_not_hold_the_tick_is_cancelled_with_the_leadership_and_run_again_by_the_next(
        monkeypatch):
    repo, bus, t = Repo(), MemoryBus(), FakeTime(at(2, 1))
    settings = load_settings(environ={"OLVM_GC_SCHEDULE": "0 * * * *"})
    started, real_collect = asyncio.Event(), gc.collect

    async def slow_collect(*args, **kwargs):
        started.set()
        await asyncio.sleep(3600)

    monkeypatch.setattr(gc, "collect", slow_collect)
    await save_gc_state(repo.store, GcState(last_slot=at(1, 30)))
    first = Housekeeper(settings, repo.store, bus, t.clock(), SchedulerStatus("a", t.now))
    await asyncio.wait_for(first.tick([], t.now), 2)  # starts the gc, does not wait for it
    await asyncio.wait_for(started.wait(), 2)
    assert first.status.gc["state"] == "running"
    await asyncio.wait_for(first.tick([], t.now), 2)  # a tick while it runs: no second gc
    task = first.gc_task
    await asyncio.wait_for(first.close(), 2)  # leadership lost
    assert task.cancelled() and points(bus, "gc") == []

    monkeypatch.setattr(gc, "collect", real_collect)
    second = Housekeeper(settings, repo.store, bus, t.clock(), SchedulerStatus("b", t.now))
    await second.tick([], t.now)
    await second.gc_task
    assert len(points(bus, "gc")) == 1 and (await load_gc_state(repo.store)).last_slot == at(2)


async def test_a_gc_waiting_for_backups_says_so_and_is_tried_again_minutes_later(monkeypatch):
    repo, bus, t = Repo(), MemoryBus(), FakeTime(at(2, 1))
    settings = load_settings(environ={"OLVM_GC_SCHEDULE": "0 * * * *"})
    real_collect = gc.collect

    async def waiting(*args, **kwargs):
        raise gc.GcWaiting("1 backup(s) running since the mark have not ended")

    monkeypatch.setattr(gc, "collect", waiting)
    await save_gc_state(repo.store, GcState(last_slot=at(1, 30)))
    hk = Housekeeper(settings, repo.store, bus, t.clock(), SchedulerStatus("a", t.now))
    await hk.tick([], t.now)
    await hk.gc_task
    assert hk.status.gc["state"] == "waiting" and hk.gc_retry_at > time.monotonic() + 60
    ok, words = summary(hk.status.to_doc(t.now, time.time()), time.time())
    assert ok and "gc waiting: garbage collection: 1 backup(s) running" in words
    monkeypatch.setattr(gc, "collect", real_collect)
    done = hk.gc_task
    await hk.tick([], t.now)
    assert hk.gc_task is done  # not before a few minutes
    hk.gc_retry_at = 0.0  # the minutes have passed
    await hk.tick([], t.now)
    await hk.gc_task
    assert hk.status.gc["state"] == "idle" and len(points(bus, "gc")) == 1
    assert (await load_gc_state(repo.store)).last_slot == at(2)

