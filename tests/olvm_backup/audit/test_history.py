"""What `olvm-backup history` shows: newest first; each step of a request with its cause (requested_by), policy and
outcome, taken from the request; a restore with the VM of its restore point; filters by VM (name or id), policy and
time; a duplicate delivery shown as one, without changing how the request ended."""
from __future__ import annotations

from olvm_backup.audit.history import rows
from olvm_backup.audit.trail import dedupe, entry_of
from schemas import BackupEvent, BackupOutcome, BackupRequest, PolicyEvent, RestoreEvent, RestoreRequest
from schemas.topics import BACKUP_EVENTS, BACKUP_REQUESTS, POLICY_EVENTS, RESTORE_EVENTS, RESTORE_REQUESTS

T = 1_714_500_000.0


def _trail():
    return [
        entry_of(POLICY_EVENTS, PolicyEvent(policy="gold", action="created", actor="alice@admin", at=T,
                                            message="policy gold created")),
        entry_of(BACKUP_REQUESTS, BackupRequest(request_id="r1", vm="app1", requested_at=T + 10, policy="gold",
                                                requested_by="policy gold: schedule nightly 2024-04-30T18:00Z")),
        entry_of(BACKUP_EVENTS, BackupEvent(request_id="r1", backup_id="b1", vm="app1", kind="accepted",
                                            at=T + 11)),
        entry_of(BACKUP_EVENTS, BackupEvent(request_id="r1", backup_id="b1", vm="app1", kind="completed",
                                            at=T + 20, message="restore point b1",
                                            outcome=BackupOutcome(duration=9, vm_id="vm-1"))),
        entry_of(BACKUP_REQUESTS, BackupRequest(request_id="r2", vm="db1", requested_at=T + 30)),
        entry_of(BACKUP_EVENTS, BackupEvent(request_id="r2", backup_id="b2", vm="db1", kind="failed", at=T + 31,
                                            message="prepare: no VM")),
        entry_of(RESTORE_REQUESTS, RestoreRequest(request_id="r3", restore_point="b1", name="app1-copy",
                                                  requested_at=T + 40, requested_by="cli")),
        entry_of(RESTORE_EVENTS, RestoreEvent(request_id="r3", restore_point="b1", kind="completed", at=T + 50,
                                              vm_id="vm-9", message="restored")),
    ]


def test_newest_first_each_step_with_its_requests_cause_policy_and_outcome():
    shown = rows(_trail())
    assert [(r.what, r.at) for r in shown] == [
        ("restore completed", T + 50), ("restore requested", T + 40), ("backup failed", T + 31),
        ("backup requested", T + 30), ("backup completed", T + 20), ("backup accepted", T + 11),
        ("backup requested", T + 10), ("policy created", T)]
    completed = shown[4]
    assert (completed.vm, completed.policy, completed.outcome, completed.backup_id) == ("app1", "gold", "completed",
                                                                                         "b1")
    assert completed.by == "policy gold: schedule nightly 2024-04-30T18:00Z"
    assert (shown[6].outcome, shown[6].backup_id) == ("completed", "b1")  # the request's row: how it ended, as what
    assert (shown[3].by, shown[3].outcome, shown[3].policy) == ("cli", "failed", "")
    assert (shown[7].by, shown[7].policy) == ("alice@admin", "gold")


def test_a_restore_names_the_vm_of_its_restore_point_and_who_asked():
    restore = [r for r in rows(_trail()) if r.topic.startswith("restore.")]
    assert [(r.what, r.vm, r.by, r.outcome, r.backup_id) for r in restore] == [
        ("restore completed", "app1", "cli", "completed", "b1"),
        ("restore requested", "app1", "cli", "completed", "b1")]


def test_steps_at_the_same_second_are_in_the_order_they_happen_newest_first():
    same = [entry_of(BACKUP_EVENTS, BackupEvent(request_id="r", vm="v", kind=k, at=T))
            for k in ("completed", "accepted", "started")]
    assert [r.what for r in rows(same)] == ["backup completed", "backup started", "backup accepted"]


def test_filter_by_vm_name_or_id_policy_and_time():
    assert {r.request_id for r in rows(_trail(), vm="app1")} == {"r1", "r3"}
    assert {r.request_id for r in rows(_trail(), vm="vm-1")} == {"r1", "r3"}  # the id the outcome names
    assert [r.what for r in rows(_trail(), vm="db1")] == ["backup failed", "backup requested"]
    assert [r.what for r in rows(_trail(), policy="gold")] == [
        "backup completed", "backup accepted", "backup requested", "policy created"]
    assert [r.what for r in rows(_trail(), since=T + 35)] == ["restore completed", "restore requested"]
    assert rows(_trail(), vm="nothing") == []


def test_a_duplicate_delivery_shows_as_such_and_the_request_still_completed():
    trail = _trail() + [
        entry_of(BACKUP_REQUESTS, BackupRequest(request_id="r1", vm="app1", requested_at=T + 60, policy="gold")),
        entry_of(BACKUP_EVENTS, BackupEvent(request_id="r1", vm="app1", kind="cancelled", at=T + 61,
                                            message="duplicate request", detail={"duplicate_of": "b1",
                                                                                 "state": "completed"})),
    ]
    newest = rows(trail)[0]
    assert (newest.what, newest.backup_id, newest.outcome) == ("backup duplicate", "b1", "completed")


def test_the_same_entries_read_twice_show_once():
    assert [r.what for r in rows(dedupe(_trail() + _trail()))] == [r.what for r in rows(_trail())]


def test_a_row_as_json_has_no_internal_fields():
    doc = rows(_trail())[0].to_json()
    assert set(doc) == {"at", "what", "vm", "policy", "by", "outcome", "message", "request_id", "backup_id", "topic"}


def test_a_snapshot_policys_run_is_shown_as_snapshots_with_its_policy_and_cause():
    detail = {"job": "hypervisor-snapshot", "policy": "snaps", "vm_name": "db1",
              "requested_by": "policy snaps: schedule daily 2024-04-30T03:00Z"}
    trail = [entry_of(BACKUP_EVENTS, BackupEvent(request_id="s1", vm="vm-db1", kind="started", at=T, detail=detail)),
             entry_of(BACKUP_EVENTS, BackupEvent(request_id="s1", vm="vm-db1", kind="completed", at=T + 2,
                                                 message="snapshot s taken", outcome=BackupOutcome(duration=2),
                                                 detail={**detail, "removed": ["old"]}))]
    shown = rows(trail, policy="snaps", vm="db1")
    assert [(r.what, r.vm, r.by, r.outcome) for r in shown] == [
        ("snapshot completed", "db1", detail["requested_by"], "completed"),
        ("snapshot started", "db1", detail["requested_by"], "completed")]
