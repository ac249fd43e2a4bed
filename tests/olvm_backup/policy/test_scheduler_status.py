"""The scheduler line of `olvm-backup status`, from the active scheduler's status object (pure)."""
from __future__ import annotations

from datetime import datetime, timezone

from olvm_backup.policy.status import STALE, SchedulerStatus, summary

NOW = datetime(2024, 3, 1, 3, 12, tzinfo=timezone.utc)


def doc(**changes) -> dict:
    status = SchedulerStatus(instance="scheduler@h:42", leader_since=NOW,
                             schedules={"gold/nightly": {"next": "2024-03-02T01:00:00+00:00", "last": None},
                                        "gold/hourly": {"next": "2024-03-01T04:00:00+00:00", "last": None}},
                             feed={"state": "following", "error": "", "last_event_id": 1234})
    for key, value in changes.items():
        setattr(status, key, value)
    return status.to_doc(NOW, written_at=1000.0)


def test_the_leader_the_feed_and_the_next_run():
    ok, words = summary(doc(), 1010.0)
    assert ok
    assert words == ("leader scheduler@h:42; engine events followed (last event 1234); "
                     "next run 2024-03-01T04:00:00+00:00 (gold/hourly)")


def test_a_feed_in_error_is_not_ok_and_says_why():
    ok, words = summary(doc(feed={"state": "error", "error": "engine unreachable", "last_event_id": 7}), 1010.0)
    assert not ok and "engine events NOT followed: engine unreachable" in words


def test_no_status_or_a_stale_one_means_no_active_scheduler():
    assert summary(None, 1010.0)[0] is False
    ok, words = summary(doc(), 1000.0 + STALE + 1)
    assert not ok and "no active scheduler" in words
