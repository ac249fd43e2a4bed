"""A backup request runs once: its marker's format, the verdict on a second delivery (ended, running with a live
owner, running with a dead one), and the duplicate's event."""
from __future__ import annotations

import json
import re
import time
import uuid

import pytest

from schemas import BackupRequest
from services.snapshotter.journal import JournalEntry, process_name
from services.snapshotter.once import (
    MARKER_MAJOR, MARKER_MINOR, MarkerError, RequestMarker, decode_marker, duplicate_event, encode_marker,
    marker_key, verdict,
)

NOW = 1_000_000.0


def _marker(state="completed", at=NOW - 5, owner="other-host:7", backup_id="b1") -> RequestMarker:
    return RequestMarker("policy:gold/vm:app1/slot:2024-05-01T02:00Z", backup_id, state, at, owner)


def _request() -> BackupRequest:
    return BackupRequest(request_id=_marker().request_id, vm="app1", requested_at=NOW, requested_by="policy gold")


def test_a_marker_is_written_with_its_version_and_read_back():
    raw = encode_marker(_marker())
    assert json.loads(raw)["v"] == [MARKER_MAJOR, MARKER_MINOR]
    assert decode_marker(raw, "k") == _marker()
    newer = json.loads(raw) | {"v": [1, 9], "added_later": True}
    assert decode_marker(json.dumps(newer).encode(), "k") == _marker()


@pytest.mark.parametrize("raw, reason", [
    (json.dumps({"v": [2, 0], "request_id": "r"}), "format [2, 0] is not readable by this build (major 1)"),
    (json.dumps({"v": [1, 0], "request_id": "r"}), "malformed"),
    (json.dumps({"v": [1, 0], "request_id": "r", "backup_id": "b", "state": "odd", "at": 1}), "unknown state"),
    ("[", "unreadable"),
])
def test_a_marker_this_build_cannot_read_is_refused_by_name(raw, reason):
    with pytest.raises(MarkerError, match=re.escape(f"request marker requests/r: {reason}")):
        decode_marker(raw.encode(), "requests/r")


def test_any_request_id_is_one_object_under_the_prefix():
    assert marker_key("r1") == "requests/r1"
    assert marker_key("policy:gold/vm:app1/slot:x").count("/") == 1


def test_a_request_never_seen_runs():
    assert verdict(None, None, NOW) is None


@pytest.mark.parametrize("state", ["completed", "failed", "cancelled"])
def test_a_request_that_ended_is_a_final_duplicate_whatever_its_owner(state):
    duplicate = verdict(_marker(state, at=NOW - 86400, owner="gone:1"), None, NOW)
    assert duplicate is not None and duplicate.final and duplicate.marker.backup_id == "b1"


def test_a_running_request_whose_journal_is_fresh_is_a_duplicate_not_final():
    journal = JournalEntry("b1", "vm1", "r", owner="other-host:7", alive_at=NOW - 3)
    duplicate = verdict(_marker("running", at=NOW - 3600), journal, NOW)
    assert duplicate is not None and not duplicate.final


def test_a_running_request_whose_owner_stopped_refreshing_runs_again():
    journal = JournalEntry("b1", "vm1", "r", owner="other-host:7", alive_at=NOW - 3600)
    assert verdict(_marker("running", at=NOW - 3600), journal, NOW) is None


def test_a_running_request_whose_journal_says_it_ended_runs_again():
    journal = JournalEntry("b1", "vm1", "r", owner="other-host:7", alive_at=NOW - 1, ended="interrupted")
    assert verdict(_marker("running"), journal, NOW) is None


def test_without_a_journal_a_fresh_marker_of_another_host_stands_for_its_owner():
    """Between the marker and the journal's first save (a few engine calls) the marker is all there is."""
    assert verdict(_marker("running", at=NOW - 5), None, NOW) is not None
    assert verdict(_marker("running", at=NOW - 600), None, NOW) is None  # never got as far as a journal


def test_a_running_marker_of_a_dead_process_on_this_host_runs_again_at_once():
    host = process_name().rpartition(":")[0]
    assert verdict(_marker("running", at=time.time(), owner=f"{host}:999999999"), None, time.time()) is None


def test_a_running_marker_of_this_process_without_a_job_runs_again():
    """This process takes one request at a time: its own marker still running is of a job that is over. (A backup id
    of its own: other tests in this process may have left a job of theirs open, which would count as running.)"""
    marker = _marker("running", at=time.time(), owner=process_name(), backup_id=f"b-{uuid.uuid4()}")
    assert verdict(marker, None, time.time()) is None


@pytest.mark.parametrize("state, says", [("completed", "which completed"), ("failed", "which failed"),
                                         ("cancelled", "which was cancelled")])
def test_a_final_duplicate_is_told_as_cancelled_naming_the_backup_it_ran_as(state, says):
    event = duplicate_event(_request(), verdict(_marker(state), None, NOW), NOW)
    assert event.kind == "cancelled" and event.backup_id is None
    assert event.request_id == _request().request_id and event.vm == "app1"
    assert event.detail == {"duplicate_of": "b1", "state": state}
    assert f"already ran as backup b1, {says}; not run again" in event.message


def test_a_running_duplicate_is_told_as_progress_its_job_ends_the_request():
    event = duplicate_event(_request(), verdict(_marker("running"), None, NOW), NOW)
    assert event.kind == "progress" and event.detail == {"duplicate_of": "b1", "state": "running"}
    assert "is running as backup b1 (snapshotter other-host:7)" in event.message
