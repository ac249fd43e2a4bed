"""The scheduler as real processes against the broker, moto and the simulator, on a driven clock: two instances
over a simulated day with the active one SIGKILLed mid-day, and a slot missed while no scheduler ran."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import sys
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from olvm_backup.config import RepositorySettings, SchedulerSettings, Settings, to_environ
from olvm_backup.kafka import Bus, ensure_topics
from olvm_backup.kafka.consumer import kafka_consumer, partitions_of
from olvm_backup.policy.model import Policy, Schedule
from olvm_backup.policy.status import STATUS_KEY
from olvm_backup.policy.store import save_policy
from olvm_backup.repository import keyring
from olvm_backup.repository.sealedstore import open_sealed
from olvm_backup.secret import Secret
from olvm_backup.stack.processes import ManagedProcess
from schemas import BackupRequest, decode
from schemas.topics import BACKUP_REQUESTS
from services.scheduler.state import STATE_KEY, SchedulerState
from tests.sim.conftest import module_sim
from tests.sim_engine import engine_settings

UTC = timezone.utc
DAY = datetime(2024, 3, 1, tzinfo=UTC)
VMS = ("web1", "db1")
SLOT = re.compile(r"schedule (?P<schedule>\S+) (?P<slot>\S+Z)")


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    yield from module_sim(tmp_path_factory)


@pytest.fixture
def base(settings, sim) -> Settings:
    repository = RepositorySettings(password=Secret("scheduler-test-pass"))
    s = dataclasses.replace(settings, engine=engine_settings(sim), repository=repository)

    async def prepare() -> None:
        await ensure_topics(s.kafka)
        from olvm_backup.objectstore import open_store
        async with open_store(s.s3) as store:
            await keyring.init_repository(store, s.repository, n=2 ** 14)
    asyncio.run(prepare())
    return s


def with_clock(settings: Settings, start: datetime, speed: float, epoch: float, tick: float) -> Settings:
    return dataclasses.replace(settings, scheduler=SchedulerSettings(
        session_timeout_ms=3000, tick=tick, event_poll_interval=1.0, clock_start=start.isoformat(),
        clock_speed=speed, clock_epoch=str(epoch)))


def save(settings: Settings, policy: Policy, state: SchedulerState | None = None) -> None:
    async def run() -> None:
        async with open_sealed(settings) as (store, _), Bus(settings.kafka, client_id="test") as bus:
            await save_policy(store, bus, policy, "test")
            if state is not None:
                await store.put(STATE_KEY, state.to_json())
    asyncio.run(run())


def read_object(settings: Settings, key: str) -> dict | None:
    async def run() -> dict | None:
        async with open_sealed(settings) as (store, _):
            try:
                return json.loads(await store.get(key))
            except Exception:
                return None
    return asyncio.run(run())


def requests(settings: Settings) -> list[BackupRequest]:
    """Every BackupRequest on the topic so far."""
    async def read() -> list[BackupRequest]:
        consumer = kafka_consumer(settings.kafka, group=None, client_id="test-requests", fetch_max_bytes=1 << 20)
        await consumer.start()
        try:
            name = BACKUP_REQUESTS.full_name(settings.kafka.topic_prefix)
            tps = [TopicPartition(name, p) for p in sorted(await partitions_of(consumer, name))]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, 0)
            end = await consumer.end_offsets(tps)
            out = []
            while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    out += [decode(r.value, BACKUP_REQUESTS.records) for r in records]
            return out
        finally:
            await consumer.stop()
    return asyncio.run(read())


def by_slot(found: list[BackupRequest]) -> dict[tuple[str, str], set[str]]:
    """(slot, VM id) -> the distinct request ids asking for it."""
    ids: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in found:
        m = SLOT.search(r.requested_by)
        if m:
            ids[(m.group("slot"), r.vm)].add(r.request_id)
    return ids


def vm_ids(sim) -> dict[str, str]:
    conn = sim.connect()
    try:
        return {vm.name: vm.id for vm in conn.system_service().vms_service().list() if vm.name in VMS}
    finally:
        conn.close()


def scheduler(settings: Settings, name: str, logs: Path) -> ManagedProcess:
    env = {**os.environ, **to_environ(settings)}
    return ManagedProcess(name, [sys.executable, "-m", "services.scheduler"], env=env,
                          log_file=logs / f"{name}.log").start()


def wait_for(what: str, check, timeout: float, processes=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(1.0)
    tails = "\n".join(f"--- {p.name}\n{p.tail(40)}" for p in processes)
    pytest.fail(f"timed out waiting for {what}\n{tails}")


def test_two_schedulers_fire_every_slot_of_a_day_once_per_vm_across_a_sigkill(base, sim, tmp_path):
    ids = vm_ids(sim)
    # A simulated day in 60 s (1440x), starting at 23:30 the day before, 30 s from now: time for both to join.
    epoch = time.time() + 30
    settings = with_clock(base, DAY - timedelta(minutes=30), 1440.0, epoch, tick=0.25)
    save(settings, Policy(name="hourly", vms=list(VMS),
                          schedules=[Schedule(name="hourly", cron="0 * * * *", window_minutes=24 * 60)]))
    processes = {p.pid: p for p in (scheduler(settings, f"scheduler-{i}", tmp_path) for i in (1, 2))}
    try:
        sim_now = lambda: DAY - timedelta(minutes=30) + timedelta(seconds=1440 * (time.time() - epoch))  # noqa: E731
        wait_for("the day's first slot", lambda: by_slot(requests(settings)).get(("2024-03-01T00:00Z", ids["web1"])),
                 60, processes.values())
        # Mid-day, SIGKILL the active one: which it is, its status says.
        wait_for("10:00", lambda: sim_now() >= DAY + timedelta(hours=10, minutes=30), 60)
        status = read_object(settings, STATUS_KEY)
        leader = processes[int(status["instance"].rsplit(":", 1)[1])]
        leader.kill()
        survivor = next(p for p in processes.values() if p is not leader)
        wait_for("every slot of the day", lambda: all(
            by_slot(requests(settings)).get((f"2024-03-01T{h:02d}:00Z", ids[vm])) for h in range(24) for vm in VMS),
            150, [survivor])
        slots = by_slot(requests(settings))
        for hour in range(24):
            for vm in VMS:
                assert len(slots[(f"2024-03-01T{hour:02d}:00Z", ids[vm])]) == 1, (hour, vm)
        after = read_object(settings, STATUS_KEY)
        assert after["instance"] != status["instance"] and int(after["instance"].rsplit(":", 1)[1]) == survivor.pid
    finally:
        for p in processes.values():
            p.stop()


def test_a_slot_missed_while_no_scheduler_ran_is_fired_once_late_within_its_window(base, sim, tmp_path):
    ids = vm_ids(sim)
    # Real speed, 03:12: the last slot fired was 01:00; 02:00 is past its 60 min window, 03:00 is 12 min late.
    settings = with_clock(base, DAY + timedelta(hours=3, minutes=12), 1.0, time.time(), tick=0.5)
    policy = Policy(name="gold", vms=list(VMS),
                    schedules=[Schedule(name="hourly", cron="0 * * * *", mode="incremental", window_minutes=60)])
    save(settings, policy, SchedulerState().with_fired("gold", "hourly", DAY + timedelta(hours=1)))
    process = scheduler(settings, "scheduler-1", tmp_path)
    try:
        wait_for("the late slot", lambda: len(requests(settings)) >= 2, 60, [process])
        fired = wait_for("the state", lambda: (read_object(settings, STATE_KEY) or {}).get("fired", {}).get(
            "gold/hourly", "").startswith("2024-03-01T03:00"), 30, [process])
        assert fired
        time.sleep(3 * settings.scheduler.tick + 1)  # more ticks: nothing more
        found = requests(settings)
        assert sorted(r.vm for r in found) == sorted(ids.values()), found
        assert all(re.search(r"schedule hourly 2024-03-01T03:00Z \(late by 1[2-4] min\)$", r.requested_by)
                   for r in found), [r.requested_by for r in found]
        assert {r.mode for r in found} == {"incremental"}
        status = read_object(settings, STATUS_KEY)
        assert any("1 slot(s) missed" in s and "2024-03-01 02:00Z" in s for s in status["skipped"]), status
    finally:
        process.stop()
