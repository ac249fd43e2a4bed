"""A schedule's slots: the instants its cron expression names in its time zone, as UTC datetimes (pure).

croniter walks the wall clock of the schedule's zone from a zone-aware start, so daylight saving is the zone's:
a time the clocks skip (02:30 on the spring change day in Europe/Paris) fires once, when the clock jumps past it
(03:00 local); a time that happens twice when the clocks go back fires once, at its first occurrence, unless the
schedule's hour field is `*` (every hour, or more often), which keeps running by the elapsed hour.

Bounds: `slots_between(after, until)` is (after, until], so consecutive windows neither repeat nor miss a slot;
`next_slot(now)` is the first slot strictly after `now`.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterator
from zoneinfo import ZoneInfo

from croniter import croniter

from .model import Schedule


def _aware(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be a time-zone-aware datetime, not {moment!r}")
    return moment


def _every_hour(cron: str) -> bool:
    return croniter(cron).expanded[1] == ["*"]


def _slots(schedule: Schedule, after: datetime) -> Iterator[datetime]:
    """Slots after `after`, in UTC, forever."""
    zone = ZoneInfo(schedule.timezone)
    start = _aware(after, "after").astimezone(zone)
    repeats = _every_hour(schedule.cron)
    it = croniter(schedule.cron, start)
    while True:
        local = it.get_next(datetime).astimezone(zone)  # astimezone sets `fold` on the second occurrence
        if local.fold and not repeats and local.replace(fold=0).utcoffset() != local.utcoffset():
            continue  # the second pass of a wall-clock time the clocks went back over
        yield local.astimezone(timezone.utc)


def slots_between(schedule: Schedule, after: datetime, until: datetime) -> list[datetime]:
    """Every slot s with after < s <= until, in UTC, in order."""
    until = _aware(until, "until")
    out: list[datetime] = []
    for slot in _slots(schedule, after):
        if slot > until:
            break
        out.append(slot)
    return out


def next_slot(schedule: Schedule, now: datetime) -> datetime:
    """The first slot strictly after `now`, in UTC."""
    return next(_slots(schedule, now))


def slot_text(slot: datetime) -> str:
    """A slot in UTC to the minute, as ids and messages carry it: 2026-11-30T02:00Z."""
    return _aware(slot, "slot").astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


def slot_key(policy_name: str, schedule_name: str, slot: datetime) -> str:
    """One slot of one schedule of one policy, the same whoever computes it: gold/nightly/2026-11-30T02:00Z."""
    return f"{policy_name}/{schedule_name}/{slot_text(slot)}"
