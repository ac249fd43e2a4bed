"""The scheduler's housekeeping decisions, pure: which policy's prune is due after its slot's backups, when gc runs."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from olvm_backup.policy.model import Policy
from olvm_backup.retention import Rules
from schemas import BackupEvent
from services.scheduler.housekeeping import GcState, PruneBook, PruneDue, due_prunes, gc_due, gc_next, is_final

UTC = timezone.utc
GOLD = Policy(name="gold", vms=["web1", "web2"], retention=Rules(last=1))
SILVER = Policy(name="silver", vms=["db1"], retention=Rules(last=2))
BARE = Policy(name="bare", vms=["db2"])  # no retention rules: never pruned
POLICIES = {p.name: p for p in (GOLD, SILVER, BARE)}


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2024, 3, 1, tzinfo=UTC) + timedelta(hours=hour, minutes=minute)


def event(request_id: str, kind: str) -> BackupEvent:
    return BackupEvent(request_id=request_id, vm="x", kind=kind, at=0.0)


def test_a_policy_is_due_once_every_request_of_its_slot_has_ended_and_not_before():
    book = PruneBook().with_slot("gold", at(2), ["g1", "g2"]).with_slot("silver", at(2), ["s1"])
    book = book.with_final("g1")
    assert due_prunes(book, POLICIES)[0] == []
    book = book.with_final("g2")
    due, book = due_prunes(book, POLICIES)
    assert due == [PruneDue("gold", at(2))]
    assert due_prunes(book, POLICIES)[0] == []  # once
    assert book.waiting() == {"s1"}
    due, book = due_prunes(book.with_final("s1"), POLICIES)
    assert due == [PruneDue("silver", at(2))] and book.batches == ()


def test_only_completed_failed_and_cancelled_end_a_request():
    assert [k for k in ("requested", "accepted", "started", "progress", "task_stored", "stored", "completed",
                        "failed", "cancelled") if is_final(event("r", k))] == ["completed", "failed", "cancelled"]


def test_ids_not_published_by_this_instance_change_nothing_and_a_slot_fired_again_is_one_batch():
    book = PruneBook().with_slot("gold", at(2), ["g1"])
    assert book.with_final("other") == book
    assert book.with_slot("gold", at(2), ["g1"]) == book
    assert book.with_final("g1").with_slot("gold", at(2), ["g1"]).waiting() == frozenset()


def test_a_slot_without_requests_is_due_at_once():
    due, _ = due_prunes(PruneBook().with_slot("gold", at(2), []), POLICIES)
    assert due == [PruneDue("gold", at(2))]


def test_a_policy_without_retention_rules_or_gone_is_never_due():
    book = PruneBook().with_slot("bare", at(2), ["b1"]).with_slot("gone", at(2), ["x1"])
    due, left = due_prunes(book, POLICIES)
    assert due == [] and left.waiting() == {"b1"}  # gone: dropped; bare: its rules may come before its backups end
    due, left = due_prunes(left.with_final("b1"), POLICIES)
    assert due == [] and left.batches == ()


def test_a_policy_whose_prune_runs_waits_and_an_ended_slot_drops_the_older_ones():
    book = PruneBook().with_slot("gold", at(1), ["old"]).with_slot("gold", at(2), ["g1"]).with_final("g1")
    due, kept = due_prunes(book, POLICIES, running={"gold"})
    assert due == [] and len(kept.batches) == 2
    due, left = due_prunes(kept, POLICIES)
    assert due == [PruneDue("gold", at(2))] and left.batches == ()  # the older slot, still running, goes with it


def test_gc_runs_the_latest_slot_passed_once_and_never_when_empty_or_first_seen():
    hourly = "0 * * * *"
    assert gc_due(hourly, at(1, 10), at(1, 59)) is None
    assert gc_due(hourly, at(1, 10), at(2, 1)) == at(2)
    assert gc_due(hourly, at(2), at(2, 30)) is None
    assert gc_due(hourly, at(2), at(5, 3)) == at(5)  # three slots missed: one run
    assert gc_due(hourly, None, at(5, 3)) is None
    assert gc_due("", at(1), at(9)) is None and gc_next("", at(1)) is None
    assert gc_next("30 3 * * *", at(4)) == at(27, 30)


def test_the_gc_state_round_trips():
    state = GcState(at(2), at(2, 5), "3 pack(s) deleted")
    assert GcState.from_json(state.to_json()) == state
    assert GcState.from_json(GcState().to_json()) == GcState()
