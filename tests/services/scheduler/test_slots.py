"""The scheduler's slot step, pure: due slots given the state and the time, late and skipped slots, the requests."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from olvm_backup.policy.model import Policy, Rule, Schedule, Selection
from olvm_backup.policy.selection import VmView
from services.scheduler.slots import due_slots, slot_step
from services.scheduler.state import SchedulerState

UTC = timezone.utc
HOURLY = Schedule(name="hourly", cron="0 * * * *", mode="incremental", window_minutes=30)
GRACE = timedelta(minutes=2)
VMS = [VmView("id-web1", "web1", "c1", frozenset({"gold"})), VmView("id-web2", "web2", "c1", frozenset({"gold"})),
       VmView("id-db1", "db1", "c1", frozenset())]
GOLD = Policy(name="gold", selection=Selection(include=[Rule(tag="gold")]), assignment="assign_and_remove",
              schedules=[HOURLY])


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2024, 3, 1, tzinfo=UTC) + timedelta(hours=hour, minutes=minute)


def test_a_slot_just_passed_is_fired_on_time():
    due = due_slots(HOURLY, at(1), at(2, 1), grace=GRACE)
    assert due.fire == [(at(2), None)] and due.skip == []


def test_a_slot_missed_within_its_window_is_fired_late_and_older_ones_are_skipped():
    due = due_slots(HOURLY, at(1), at(4, 12), grace=GRACE)
    assert due.fire == [(at(4), timedelta(minutes=12))]
    assert due.skip == [at(2), at(3)]


def test_nothing_is_due_before_the_next_slot():
    assert due_slots(HOURLY, at(2), at(2, 59), grace=GRACE) == due_slots(HOURLY, at(2), at(2), grace=GRACE)
    assert due_slots(HOURLY, at(2), at(2, 59), grace=GRACE).fire == []


def test_the_step_fires_each_slot_once_for_every_vm_the_policy_holds():
    state = SchedulerState().with_fired("gold", "hourly", at(1))
    step = slot_step([GOLD], VMS, state, at(2, 1), grace=GRACE)
    [fired] = step.fired
    assert fired.slot == at(2) and fired.state.last("gold", "hourly") == at(2)
    assert sorted(r.vm for r in fired.requests) == ["id-web1", "id-web2"]
    assert {r.mode for r in fired.requests} == {"incremental"}
    assert all(r.requested_by == "policy gold: schedule hourly 2024-03-01T02:00Z" for r in fired.requests)
    # The same slot computed again (another instance after a failover) asks for the same ids; the next, others.
    again = slot_step([GOLD], VMS, state, at(2, 20), grace=GRACE)
    assert [r.request_id for r in again.fired[0].requests] == [r.request_id for r in fired.requests]
    later = slot_step([GOLD], VMS, fired.state, at(3, 1), grace=GRACE)
    assert not {r.request_id for r in later.fired[0].requests} & {r.request_id for r in fired.requests}
    assert slot_step([GOLD], VMS, fired.state, at(2, 30), grace=GRACE).fired == []


def test_a_late_slot_says_so_and_a_skipped_one_is_reported_and_not_fired():
    state = SchedulerState().with_fired("gold", "hourly", at(1))
    step = slot_step([GOLD], VMS, state, at(4, 12), grace=GRACE)
    [fired] = step.fired
    assert fired.slot == at(4) and fired.late_by == timedelta(minutes=12)
    assert all(r.requested_by.endswith("schedule hourly 2024-03-01T04:00Z (late by 12 min)") for r in fired.requests)
    [skipped] = step.skipped
    assert skipped.slots == [at(2), at(3)] and "2 slot(s) missed" in skipped.message()
    assert step.state.last("gold", "hourly") == at(3)  # written before the late slot fires: never fired later
    assert step.final.last("gold", "hourly") == at(4)


def test_a_schedule_seen_for_the_first_time_starts_from_now():
    step = slot_step([GOLD], VMS, SchedulerState(), at(5, 30), grace=GRACE)
    assert step.fired == [] and step.state.last("gold", "hourly") == at(5, 30)


def test_slots_of_several_schedules_fire_in_time_order_each_state_following_the_last():
    nightly = Schedule(name="nightly", cron="30 1 * * *", mode="full", window_minutes=600)
    policy = Policy(name="gold", vms=["db1"], schedules=[HOURLY, nightly])
    state = SchedulerState().with_fired("gold", "hourly", at(1)).with_fired("gold", "nightly", at(0))
    step = slot_step([policy], VMS, state, at(2, 10), grace=GRACE)
    assert [(f.schedule, f.slot) for f in step.fired] == [("nightly", at(1, 30)), ("hourly", at(2))]
    assert [f.requests[0].mode for f in step.fired] == ["full", "incremental"]
    assert step.fired[0].state.last("gold", "hourly") == at(1)
    assert step.final.last("gold", "nightly") == at(1, 30) and step.final.last("gold", "hourly") == at(2)


def test_the_state_survives_its_json():
    state = SchedulerState().with_fired("gold", "hourly", at(3)).with_fired("silver", "nightly", at(1, 30))
    assert SchedulerState.from_json(state.to_json()) == state
