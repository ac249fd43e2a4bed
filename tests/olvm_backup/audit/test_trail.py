"""The audit trail's objects: what is kept, the format and its version, keys by day, de-duplication by what an entry
is (never where it was read: a restarted embedded broker starts its offsets at 0 again), and --since."""
from __future__ import annotations

import json
import re
import time

import pytest

from olvm_backup.audit.trail import (
    TRAIL_MAJOR, TRAIL_MINOR, SinceError, TrailError, day_prefixes, decode_batch, dedupe, encode_batch, entry_of,
    kept, object_key, parse_since,
)
from schemas import BackupEvent, BackupRequest, PolicyEvent, RestoreEvent, RestoreRequest
from schemas.topics import BACKUP_EVENTS, BACKUP_REQUESTS, POLICY_EVENTS, RESTORE_EVENTS, RESTORE_REQUESTS

T = 1_714_500_000.0  # 2024-04-30 18:00 UTC (T + 8 h is the next day)


def _event(kind: str, at: float = T, request_id: str = "r1") -> BackupEvent:
    return BackupEvent(request_id=request_id, backup_id="b1", vm="app1", kind=kind, at=at)


@pytest.mark.parametrize("kind, keep", [("requested", True), ("accepted", True), ("started", True),
                                        ("stored", True), ("completed", True), ("failed", True),
                                        ("cancelled", True), ("progress", False), ("task_stored", False)])
def test_a_backups_steps_are_kept_its_progress_is_not(kind, keep):
    assert kept(BACKUP_EVENTS, _event(kind)) is keep


@pytest.mark.parametrize("kind, keep", [("started", True), ("completed", True), ("progress", False)])
def test_a_restores_steps_are_kept_its_progress_is_not(kind, keep):
    event = RestoreEvent(request_id="r", restore_point="b1", kind=kind, at=T)
    assert kept(RESTORE_EVENTS, event) is keep


def test_requests_and_policy_changes_are_kept():
    assert kept(BACKUP_REQUESTS, BackupRequest(request_id="r", vm="app1", requested_at=T))
    assert kept(RESTORE_REQUESTS, RestoreRequest(request_id="r", restore_point="b1", requested_at=T))
    assert kept(POLICY_EVENTS, PolicyEvent(policy="gold", action="created", actor="alice@host", at=T))


def test_an_entry_is_the_record_as_json_at_its_own_time():
    entry = entry_of(BACKUP_REQUESTS, BackupRequest(request_id="r", vm="app1", requested_at=T, policy="gold"))
    assert (entry.topic, entry.type, entry.at) == ("backup.requests", "BackupRequest", T)
    assert entry.record["vm"] == "app1" and entry.record["policy"] == "gold"
    assert entry_of(BACKUP_EVENTS, _event("completed", T + 5)).at == T + 5


def test_a_batch_is_written_with_its_version_and_read_back():
    entries = [entry_of(BACKUP_EVENTS, _event(k)) for k in ("accepted", "completed")]
    raw = encode_batch(entries, T + 1, "auditor@h:1")
    header = json.loads(raw.splitlines()[0])
    assert header == {"audit": [TRAIL_MAJOR, TRAIL_MINOR], "written_at": T + 1, "writer": "auditor@h:1"}
    assert decode_batch(raw, "k") == entries


def test_a_newer_minor_is_read_its_extra_fields_passed_over():
    lines = [{"audit": [1, 7]}, {"topic": "backup.events", "type": "BackupEvent", "record": {"kind": "started"},
                                 "at": T, "added_later": 1}]
    raw = "\n".join(json.dumps(line) for line in lines).encode()
    [entry] = decode_batch(raw, "k")
    assert entry.record == {"kind": "started"}


@pytest.mark.parametrize("raw, reason", [
    (b'{"audit": [2, 0]}\n', "format [2, 0] is not readable by this build (major 1)"),
    (b'{"nothing": 1}\n', "unreadable"),
    (b'{"audit": [1, 0]}\n{"topic": "x"}\n', "malformed entry"),
    (b"\xff\xfe", "unreadable"),
])
def test_an_object_this_build_cannot_read_is_refused_by_name(raw, reason):
    with pytest.raises(TrailError, match=re.escape(f"audit trail audit/2024-04-30/1: {reason}")):
        decode_batch(raw, "audit/2024-04-30/1")


def test_an_object_is_keyed_by_the_day_and_time_it_was_written():
    assert object_key(T, "ab12") == "audit/2024-04-30/1714500000000-ab12"


def test_the_days_of_a_range_are_listed_both_ends_included():
    assert day_prefixes(T, T) == ["audit/2024-04-30/"]
    assert day_prefixes(T - 86400, T + 8 * 3600) == ["audit/2024-04-29/", "audit/2024-04-30/", "audit/2024-05-01/"]
    assert len(day_prefixes(T - 7 * 86400, T)) == 8


def test_the_same_record_read_again_after_a_broker_restart_is_one_entry():
    """Before the restart the auditor read offsets 0..2 and stopped before committing; the broker came back empty,
    the snapshotter's recovery published the same records again at offsets 0..2, and new ones came after."""
    first = [entry_of(BACKUP_EVENTS, _event(k, T + i)) for i, k in enumerate(("accepted", "started", "completed"))]
    again = [entry_of(BACKUP_EVENTS, _event(k, T + i)) for i, k in enumerate(("accepted", "started", "completed"))]
    new = [entry_of(BACKUP_EVENTS, _event("accepted", T + 100, request_id="r2"))]
    assert dedupe(first + again + new) == first + new


def test_records_that_differ_in_anything_stay_two_entries():
    """The same request and kind at another time, or with another message: two entries."""
    a = entry_of(BACKUP_EVENTS, _event("failed", T))
    b = entry_of(BACKUP_EVENTS, _event("failed", T + 1))
    c = entry_of(BACKUP_EVENTS, BackupEvent(request_id="r1", backup_id="b1", vm="app1", kind="failed", at=T,
                                            message="other"))
    assert dedupe([a, b, c, a]) == [a, b, c]


@pytest.mark.parametrize("text, seconds", [("30m", 1800), ("12h", 43200), ("7d", 604800), ("2w", 1209600),
                                           (" 1d ", 86400)])
def test_since_takes_minutes_hours_days_weeks(text, seconds):
    assert parse_since(text) == seconds


@pytest.mark.parametrize("text", ["7", "d", "7y", "-1d", "1.5h", ""])
def test_since_refuses_anything_else_naming_it(text):
    with pytest.raises(SinceError, match=re.escape(f"--since {text!r}: expected a number and m, h, d or w")):
        parse_since(text)


def test_an_entry_without_a_time_gets_the_time_it_was_kept():
    """Every audited record has its time today; a future one without takes the auditor's clock."""
    from schemas import Record

    class Untimed(Record):
        what: str

    before = time.time()
    assert entry_of(POLICY_EVENTS, Untimed(what="x")).at >= before
