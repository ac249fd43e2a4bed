"""Retention decisions on made-up timelines: what each rule keeps and says, and the guards no rule overrides."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from olvm_backup.retention import Point, RetentionError, Rules, decide, format_duration, parse_duration


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def points(*times: str, protected: tuple[str, ...] = ()) -> list[Point]:
    return [Point(t, at(t), protected=t in protected) for t in times]


def kept(decisions) -> list[str]:
    return [d.point.backup_id for d in decisions if d.keep]


FIVE = points("2026-11-26T02:00", "2026-11-27T02:00", "2026-11-28T02:00", "2026-11-29T02:00", "2026-11-30T02:00")


def test_keep_last_three_of_five_keeps_the_three_newest():
    decisions = decide(FIVE, Rules(last=3))
    assert kept(decisions) == ["2026-11-30T02:00", "2026-11-29T02:00", "2026-11-28T02:00"]
    assert [d.reasons for d in decisions if not d.keep] == [[], []]


def test_the_newest_is_kept_whatever_the_rules_say():
    # keep-monthly 1 keeps November's newest, which is the newest: kept as both, the older ones of November go.
    decisions = decide(FIVE, Rules(monthly=1))
    assert kept(decisions) == ["2026-11-30T02:00"]
    assert "newest (the base of the next incremental)" in decisions[0].reasons


def test_daily_keeps_the_newest_of_each_day_and_days_without_a_backup_do_not_count():
    ps = points("2026-11-30T20:00", "2026-11-30T08:00", "2026-11-28T23:00", "2026-11-28T01:00", "2026-11-20T12:00")
    decisions = decide(ps, Rules(daily=2))
    assert kept(decisions) == ["2026-11-30T20:00", "2026-11-28T23:00"]
    assert decisions[2].reasons == ["keep-daily (2026-11-28)"]


def test_weekly_uses_iso_weeks_across_the_new_year_and_skips_weeks_already_kept():
    # 2026-12-31 (Thursday) and 2027-01-03 (Sunday) are both in ISO week 2026-W53; 2027-01-04 starts 2027-W01.
    ps = points("2027-01-04T10:00", "2027-01-03T10:00", "2026-12-31T10:00", "2026-12-27T10:00", "2026-12-20T10:00")
    decisions = decide(ps, Rules(last=1, weekly=2))
    assert kept(decisions) == ["2027-01-04T10:00", "2027-01-03T10:00", "2026-12-27T10:00"]
    assert decisions[1].reasons == ["keep-weekly (2026-W53)"]
    assert decisions[3].reasons == ["keep-weekly (2026-W52)"]


def test_a_later_rule_passes_over_periods_an_earlier_one_kept():
    ps = points("2026-11-30T12:00", "2026-11-29T12:00", "2026-11-02T12:00", "2026-10-15T12:00", "2026-09-15T12:00")
    decisions = decide(ps, Rules(daily=2, monthly=2))
    # November is covered by the daily ones: monthly keeps October and September.
    assert kept(decisions) == ["2026-11-30T12:00", "2026-11-29T12:00", "2026-10-15T12:00", "2026-09-15T12:00"]


def test_protected_and_in_use_restore_points_stay_with_their_reason():
    ps = points(*(p.backup_id for p in FIVE), protected=("2026-11-26T02:00",))
    decisions = decide(ps, Rules(last=1), in_use=frozenset({"2026-11-27T02:00"}))
    assert kept(decisions) == ["2026-11-30T02:00", "2026-11-27T02:00", "2026-11-26T02:00"]
    assert decisions[3].reasons == ["in use"] and decisions[4].reasons == ["protected"]


def test_keep_within_is_measured_from_the_newest_restore_point():
    decisions = decide(FIVE, Rules(within=parse_duration("2d")))
    assert kept(decisions) == ["2026-11-30T02:00", "2026-11-29T02:00", "2026-11-28T02:00"]


def test_no_rule_keeps_everything():
    assert all(d.keep for d in decide(FIVE, Rules()))


def test_bad_rules_and_durations_are_refused_by_name():
    with pytest.raises(RetentionError, match="keep-daily must be 0 or more"):
        Rules(daily=-1)
    with pytest.raises(RetentionError, match="'7' is not a duration"):
        parse_duration("7")
    assert parse_duration("36h") == 36 * 3600 and format_duration(parse_duration("2w")) == "2w"
