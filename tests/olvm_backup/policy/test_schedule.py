"""A schedule's slots in its time zone, as UTC instants: a day of slots, the daylight-saving days of
Europe/Paris, the bounds of a window, next_slot and slot_key."""
from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from olvm_backup.policy.model import Schedule
from olvm_backup.policy.schedule import next_slot, slot_key, slots_between

UTC = timezone.utc
PARIS = ZoneInfo("Europe/Paris")


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_every_fifteen_minutes_over_a_day():
    schedule = Schedule("quarter", "*/15 * * * *")
    slots = slots_between(schedule, utc(2026, 11, 30), utc(2026, 12, 1))
    assert len(slots) == 96
    assert slots[0] == utc(2026, 11, 30, 0, 15) and slots[-1] == utc(2026, 12, 1)  # (after, until]
    assert all(s.tzinfo == UTC for s in slots)
    assert all(b - a == timedelta(minutes=15) for a, b in itertools.pairwise(slots))


def test_consecutive_windows_neither_repeat_nor_miss_a_slot():
    schedule = Schedule("hourly", "0 * * * *", "Europe/Paris")
    edges = [utc(2026, 11, 30) + timedelta(minutes=37 * i) for i in range(40)]
    pieces = [s for a, b in itertools.pairwise(edges) for s in slots_between(schedule, a, b)]
    assert pieces == slots_between(schedule, edges[0], edges[-1])
    assert len(pieces) == len(set(pieces)) == 24


def test_the_time_zone_is_the_schedules():
    schedule = Schedule("nightly", "0 2 * * *", "Europe/Paris")
    # Winter: Paris is UTC+1, so 02:00 there is 01:00 UTC; summer: UTC+2.
    assert slots_between(schedule, utc(2026, 11, 30), utc(2026, 12, 1)) == [utc(2026, 11, 30, 1)]
    assert slots_between(schedule, utc(2026, 6, 30, 12), utc(2026, 7, 1, 12)) == [utc(2026, 7, 1, 0)]


def test_spring_forward_in_paris():
    """29 March 2026: 02:00 becomes 03:00. A daily slot at 02:30, a time that does not exist that day, runs once
    as the clock jumps; an hourly schedule has 23 slots that day."""
    daily = Schedule("nightly", "30 2 * * *", "Europe/Paris")
    day = (datetime(2026, 3, 29, tzinfo=PARIS), datetime(2026, 3, 30, tzinfo=PARIS))
    [slot] = slots_between(daily, *day)
    assert slot == utc(2026, 3, 29, 1) and slot.astimezone(PARIS).hour == 3
    hourly = Schedule("hourly", "0 * * * *", "Europe/Paris")
    assert len(slots_between(hourly, day[0] - timedelta(seconds=1), day[1] - timedelta(seconds=1))) == 23


def test_fall_back_in_paris():
    """25 October 2026: 03:00 becomes 02:00 again. A daily slot at 02:30 runs once, at its first occurrence
    (summer time); an hourly schedule runs by the elapsed hour, 25 slots that day."""
    daily = Schedule("nightly", "30 2 * * *", "Europe/Paris")
    day = (datetime(2026, 10, 25, tzinfo=PARIS), datetime(2026, 10, 26, tzinfo=PARIS))
    assert slots_between(daily, *day) == [utc(2026, 10, 25, 0, 30)]
    around = slots_between(daily, utc(2026, 10, 23), utc(2026, 10, 28))
    assert [s.astimezone(PARIS).strftime("%d %H:%M") for s in around] == \
        ["23 02:30", "24 02:30", "25 02:30", "26 02:30", "27 02:30"]
    hourly = Schedule("hourly", "0 * * * *", "Europe/Paris")
    slots = slots_between(hourly, day[0] - timedelta(seconds=1), day[1] - timedelta(seconds=1))
    assert len(slots) == 25 and all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(slots))


def test_next_slot_is_strictly_after_now():
    schedule = Schedule("sunday", "0 2 * * 0", "Europe/Paris", "full")
    assert next_slot(schedule, utc(2026, 11, 25, 12)) == utc(2026, 11, 29, 1)  # Sunday 29 Nov, 02:00 Paris
    assert next_slot(schedule, utc(2026, 11, 29, 1)) == utc(2026, 12, 6, 1)
    assert next_slot(schedule, datetime(2026, 11, 29, 1, 59, tzinfo=PARIS)) == utc(2026, 11, 29, 1)


def test_naive_datetimes_are_refused():
    schedule = Schedule("hourly", "0 * * * *")
    with pytest.raises(ValueError, match="time-zone-aware"):
        next_slot(schedule, datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="time-zone-aware"):
        slots_between(schedule, utc(2026, 1, 1), datetime(2026, 1, 2))


def test_slot_key_is_the_same_in_any_time_zone():
    slot = utc(2026, 11, 30, 2)
    assert slot_key("gold", "nightly", slot) == "gold/nightly/2026-11-30T02:00Z"
    assert slot_key("gold", "nightly", slot.astimezone(PARIS)) == "gold/nightly/2026-11-30T02:00Z"
