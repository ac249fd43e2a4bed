"""What the active scheduler tells `olvm-backup status` (olvm_backup/policy/status.py holds the object's form)."""
from __future__ import annotations

from datetime import datetime
from typing import Iterable

from olvm_backup.policy.model import Policy
from olvm_backup.policy.schedule import next_slot
from olvm_backup.policy.status import MAX_SKIPPED, SchedulerStatus, write_status

from .slots import Fired, Skipped
from .state import SchedulerState, schedule_id

__all__ = ["SchedulerStatus", "note_fired", "note_schedules", "note_skipped", "write_status"]


def note_schedules(status: SchedulerStatus, policies: Iterable[Policy], state: SchedulerState, now: datetime) -> None:
    schedules = {}
    for policy in policies:
        for schedule in policy.schedules:
            last = state.last(policy.name, schedule.name)
            schedules[schedule_id(policy.name, schedule.name)] = {
                "next": next_slot(schedule, now).isoformat(), "last": last.isoformat() if last else None}
    status.schedules = schedules


def note_fired(status: SchedulerStatus, fired: Fired) -> None:
    status.last_fired = {"policy": fired.policy, "schedule": fired.schedule, "slot": fired.slot.isoformat(),
                         "requests": len(fired.requests),
                         "late_minutes": round(fired.late_by.total_seconds() / 60) if fired.late_by else 0}


def note_skipped(status: SchedulerStatus, skipped: Skipped) -> None:
    status.skipped = (status.skipped + [skipped.message()])[-MAX_SKIPPED:]
