"""Scheduler: backup requests from the policies' schedules and tag triggers. Run 1..N; one is active.

Leadership is the scheduler group's hold on `scheduler.leader` (leadership.py). The active instance, every
OLVM_SCHEDULER_TICK seconds: loads the policies and the engine's VMs, fires the slots due since the state's last
one (slots.py; the state is written after each slot's requests are published), re-evaluates the selections
every few minutes, and writes `scheduler/status.json` for `olvm-backup status`. It follows the engine's event
feed too (triggers.py), so a VM tagged in the engine joins its policy within seconds, and `backup.events`
(housekeeper.py): a policy is pruned once its slot's backups have all ended, and gc runs on OLVM_GC_SCHEDULE, as
tasks the tick starts and does not wait for. A hypervisor-snapshots policy's slot asks for no backup: the leader
takes its snapshots and removes those its retention no longer keeps itself (snapshotting.py), as such a task too.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from datetime import timedelta

from olvm_backup import metrics
from olvm_backup.config import Settings
from olvm_backup.errors import BackupError
from olvm_backup.engine.connection import Engine
from olvm_backup.engine.inventory import list_vms
from olvm_backup.kafka import Bus
from olvm_backup.objectstore import ObjectStore
from olvm_backup.policy.store import list_policies
from olvm_backup.repository.sealedstore import open_sealed
from schemas.topics import BACKUP_REQUESTS

from .clock import Clock
from .housekeeper import Housekeeper
from .leadership import Leadership
from .slots import Step, slot_step
from .snapshotting import SnapshotKeeper
from .state import SchedulerState, load_state, save_state
from .status import SchedulerStatus, note_fired, note_schedules, note_skipped, write_status
from .triggers import Triggers

log = logging.getLogger(__name__)

REEVALUATE = 120.0  # real seconds between re-evaluations of the selections on the tick (the feed's are at once)
FOLLOW_WAIT = 30.0  # real seconds the first tick waits for backup.events to be followed (prunes after backups)


def grace(settings: Settings, clock: Clock) -> timedelta:
    """How old a slot may be and still count as on time: two ticks of the clock, at least a minute."""
    return timedelta(seconds=max(60.0, 2 * settings.scheduler.tick * clock.speed))


class Leader:
    """What the active instance does, until cancelled (its leadership lost, the service stopped)."""

    def __init__(self, settings: Settings, store: ObjectStore, bus: Bus, clock: Clock, name: str) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.clock = clock
        self.engine = Engine(settings.engine)
        self.status = SchedulerStatus(instance=name, leader_since=clock.now(), clock=clock.describe())
        self.triggers = Triggers(settings, store, bus, self.engine, self.status, now=clock.now)
        self.housekeeper = Housekeeper(settings, store, bus, clock, self.status, name)
        self.snapshots = SnapshotKeeper(store, bus, self.engine, self.status, clock.now)
        self._state: SchedulerState | None = None
        self._evaluated = 0.0

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tasks:
                if self.settings.engine.url:
                    tasks.create_task(self.triggers.follow(), name="scheduler-feed")
                tasks.create_task(self.housekeeper.follow(), name="scheduler-backup-events")
                tasks.create_task(self._ticks(), name="scheduler-ticks")
        finally:
            await asyncio.shield(self._close())

    async def _close(self) -> None:
        await self.housekeeper.close()  # a prune or gc running is cancelled: both are safe to run again
        await self.snapshots.close()  # a slot's snapshot cut short is ours and recorded: the next slot counts it
        with contextlib.suppress(Exception):
            await self.engine.close()

    async def _ticks(self) -> None:
        await self.housekeeper.wait_ready(FOLLOW_WAIT)
        while True:
            try:
                await self.tick()
                self.status.error = ""
            except BackupError as e:  # the store or the engine away: the next tick tries again
                log.warning("scheduler tick failed: %s", e)
                self.status.error = str(e)
            with contextlib.suppress(BackupError):
                await write_status(self.store, self.status, self.clock.now())
            await asyncio.sleep(self.settings.scheduler.tick)

    async def tick(self) -> None:
        if self._state is None:
            self._state = await load_state(self.store)
        policies = await list_policies(self.store)
        vms = await list_vms(self.engine) if self.settings.engine.url else []
        if time.monotonic() - self._evaluated >= REEVALUATE:
            await self.triggers.reevaluate(policies, vms, events=[])
            self._evaluated = time.monotonic()
            policies = await list_policies(self.store)
        now = self.clock.now()
        step = slot_step(policies, vms, self._state, now, grace=grace(self.settings, self.clock))
        await self.fire(step)
        note_schedules(self.status, policies, self._state, now)
        await self.housekeeper.tick(policies, now)  # starts the prunes and the gc due; never waits for them

    async def fire(self, step: Step) -> None:
        assert self._state is not None
        for skipped in step.skipped:
            log.warning("%s", skipped.message())
            metrics.SLOTS.labels(skipped.kind, "skipped").inc(len(skipped.slots))
            note_skipped(self.status, skipped)
        if step.state != self._state:
            await save_state(self.store, step.state)
            self._state = step.state
        for fired in step.fired:
            if self.snapshots.takes(fired):  # a hypervisor-snapshots policy: no backup, the scheduler takes them
                self.snapshots.start(fired)
            else:
                self.housekeeper.expect(fired)  # before publishing: no final event of its requests comes first
                for request in fired.requests:
                    await self.bus.publish(BACKUP_REQUESTS, request, key=request.vm)
            await save_state(self.store, fired.state)  # only now: a slot cut short is fired again, same ids
            self._state = fired.state
            late = f", late by {fired.late_by}" if fired.late_by is not None else ""
            log.info("policy %s: schedule %s: slot %s fired: %d request(s)%s", fired.policy, fired.schedule,
                     fired.slot.isoformat(), len(fired.requests), late)
            note_fired(self.status, fired)
            metrics.SLOTS.labels(fired.kind, "fired").inc()


async def main(settings: Settings) -> None:
    name = f"scheduler@{socket.gethostname()}:{os.getpid()}"
    clock = Clock.from_settings(settings.scheduler)
    if clock.simulated:
        log.warning("the scheduler's clock is simulated (OLVM_SCHEDULER_CLOCK_*): now %s, %s", clock.now(),
                    clock.describe())
    async with open_sealed(settings) as (store, _), Bus(settings.kafka, client_id=name) as bus:
        leadership = Leadership(settings.kafka, client_id=name,
                                session_timeout_ms=settings.scheduler.session_timeout_ms)
        await leadership.run(lambda: Leader(settings, store, bus, clock, name).run())


