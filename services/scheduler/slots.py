"""The active scheduler's slot step (pure): from the policies, the engine's VMs, the durable state and the time
to the requests to publish, slot by slot, and the state to write after each.

A slot is due once the clock has passed it. It is fired if it is no older than its schedule's window
(`window_minutes`, or `grace` when that is longer: the tick's own delay), and its requests say "late by N min"
when it is more than `grace` old (a slot missed while no scheduler ran, or during a failover). Older slots are
skipped and reported, never fired. Every request of a slot has the id `request_id(policy, schedule, slot, vm)`,
so a slot fired again by another instance after a failover asks for nothing new.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterable

from olvm_backup.policy.model import Policy, Schedule
from olvm_backup.policy.requests import backup_request, request_id, schedule_cause
from olvm_backup.policy.schedule import slots_between
from olvm_backup.policy.selection import VmView, evaluate
from schemas import BackupRequest

from .state import SchedulerState


@dataclass(frozen=True)
class Due:
    """The slots of one schedule the clock has passed since its last one fired: to fire (with how late each is,
    None when on time) and to skip (past the window)."""

    fire: list[tuple[datetime, timedelta | None]]
    skip: list[datetime]


def due_slots(schedule: Schedule, last: datetime, now: datetime, *, grace: timedelta) -> Due:
    window = max(timedelta(minutes=schedule.window_minutes), grace)
    fire: list[tuple[datetime, timedelta | None]] = []
    skip: list[datetime] = []
    for slot in slots_between(schedule, last, now):
        age = now - slot
        if age > window:
            skip.append(slot)
        else:
            fire.append((slot, age if age > grace else None))
    return Due(fire, skip)


def late_text(late_by: timedelta) -> str:
    return f"late by {max(1, round(late_by.total_seconds() / 60))} min"


@dataclass(frozen=True)
class Fired:
    """One slot of one schedule: its requests, and the state to write once they are all published."""

    policy: str
    schedule: str
    slot: datetime
    late_by: timedelta | None
    requests: list[BackupRequest]
    state: SchedulerState
    kind: str = "backup"  # the policy's: a hypervisor-snapshots slot is run by the scheduler (snapshotting.py)


@dataclass(frozen=True)
class Skipped:
    policy: str
    schedule: str
    slots: list[datetime]
    window_minutes: int
    kind: str = "backup"  # the policy's, as Fired's

    def message(self) -> str:
        first, last = self.slots[0], self.slots[-1]
        span = f"{first:%Y-%m-%d %H:%M}Z" + (f" to {last:%Y-%m-%d %H:%M}Z" if last != first else "")
        return (f"policy {self.policy}: schedule {self.schedule}: {len(self.slots)} slot(s) missed while no "
                f"scheduler ran ({span}) are past the {self.window_minutes} min window and are skipped")


@dataclass(frozen=True)
class Step:
    state: SchedulerState  # first sightings and skips recorded: to write before any slot is fired
    fired: list[Fired] = field(default_factory=list)  # in slot order; each carries the state that follows it
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def final(self) -> SchedulerState:
        return self.fired[-1].state if self.fired else self.state


def slot_request(policy: Policy, schedule: Schedule, slot: datetime, vm: VmView, late_by: timedelta | None,
                 now: datetime) -> BackupRequest:
    cause = schedule_cause(schedule, slot) + (f" ({late_text(late_by)})" if late_by is not None else "")
    return backup_request(policy, vm, mode=schedule.mode, cause=cause,
                          request_id=request_id(policy, schedule, slot, vm.vm_id), now=now.timestamp())


def slot_step(policies: Iterable[Policy], vms: Iterable[VmView], state: SchedulerState, now: datetime, *,
              grace: timedelta) -> Step:
    policies = sorted(policies, key=lambda p: p.name)
    holds = evaluate(policies, vms)
    pending: list[tuple[datetime, Policy, Schedule, timedelta | None]] = []
    skipped: list[Skipped] = []
    for policy in policies:
        for schedule in policy.schedules:
            last = state.last(policy.name, schedule.name)
            if last is None:  # a schedule new to the scheduler starts now
                state = state.with_fired(policy.name, schedule.name, now)
                continue
            due = due_slots(schedule, last, now, grace=grace)
            if due.skip:
                skipped.append(Skipped(policy.name, schedule.name, due.skip, schedule.window_minutes, policy.kind))
                state = state.with_fired(policy.name, schedule.name, due.skip[-1])
            pending += [(slot, policy, schedule, late_by) for slot, late_by in due.fire]
    step = Step(state, skipped=skipped)
    for slot, policy, schedule, late_by in sorted(pending, key=lambda p: (p[0], p[1].name, p[2].name)):
        state = state.with_fired(policy.name, schedule.name, slot)
        requests = [slot_request(policy, schedule, slot, vm, late_by, now) for vm in holds[policy.name].holds]
        step.fired.append(Fired(policy.name, schedule.name, slot, late_by, requests, state, policy.kind))
    return step
