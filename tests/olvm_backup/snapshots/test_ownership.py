"""Which snapshots are ours and which a snapshot policy removes (pure, and the records in the in-memory store):
ours needs our description AND its correlation id recorded; a policy's retention only ever looks at the snapshots
that policy made, never a user's, another policy's, one taken by hand or a snapshot backup's."""
from __future__ import annotations

import pytest

from olvm_backup.objectstore.memory import MemoryStore
from olvm_backup.retention import Rules
from olvm_backup.snapshots import records
from olvm_backup.snapshots.keeping import Snap, to_remove
from olvm_backup.snapshots.ownership import correlation_of, describe, is_ours, new_correlation_id, owner_of
from olvm_backup.snapshots.records import RecordError, SnapshotRecord

CID = "0b6a4b47-2a5d-4d4c-9a59-0c8a1c7d1e2f"


def test_ours_needs_the_form_and_the_recorded_correlation_id():
    text = describe("policy hourly 2026-11-30T02:00Z", CID)
    assert text == f"olvm-backup policy hourly 2026-11-30T02:00Z [{CID}]" and correlation_of(text) == CID
    assert is_ours(text, {CID}) and not is_ours(text, set())
    assert not is_ours("before the upgrade", {CID}) and correlation_of("olvm-backup x [not-a-uuid]") is None
    with pytest.raises(ValueError):
        describe("x", "not-a-uuid")
    assert correlation_of(describe("by alice@host: two\nlines ]", CID)) == CID
    record = SnapshotRecord("vm1", CID, 0.0, "scheduler", "hourly")
    assert owner_of(text, {CID: record}) == "policy hourly"
    assert owner_of(text, {}) == "" and owner_of("olvm-backup 1234 (request 5678)", {}) == "backup"


def test_the_snapshot_backups_never_take_a_managed_snapshot_for_theirs():
    """The snapshot backup strategy removes the snapshots it finds of its own form (services/snapshotter): ours by
    hand or by policy must never be of that form, whatever the purpose words."""
    from services.snapshotter.layers import backup_of

    for purpose in ("policy hourly 2026-11-30T02:00Z", f"by alice@host: {CID}", "by root@vm"):
        assert backup_of(describe(purpose, CID)) is None


def test_a_policy_removes_only_its_own_snapshots_past_its_rules():
    cids = [new_correlation_id() for _ in range(6)]
    known = {c: SnapshotRecord("vm1", c, 0.0, "scheduler", "hourly") for c in cids[:4]}
    known[cids[4]] = SnapshotRecord("vm1", cids[4], 0.0, "alice@host")  # taken by hand
    known[cids[5]] = SnapshotRecord("vm1", cids[5], 0.0, "scheduler", "other")  # another policy's
    snaps = [Snap(f"s{i}", describe("x", c), float(i)) for i, c in enumerate(cids)]
    snaps += [Snap("user", "before the upgrade", 0.5), Snap("fake", describe("x", new_correlation_id()), 0.7),
              Snap("backup", "olvm-backup b1 (request r1)", 0.2)]
    assert to_remove(snaps, known, "hourly", Rules(last=3)) == ["s0"]
    assert to_remove(snaps, known, "hourly", Rules(last=1)) == ["s2", "s1", "s0"]
    assert to_remove(snaps, known, "hourly", Rules()) == []  # no rule: keep everything
    assert to_remove(snaps, known, "nobody", Rules(last=1)) == []


async def test_records_round_trip_per_vm_and_refuse_a_key_that_is_not_one_segment():
    store = MemoryStore()
    a = SnapshotRecord("vm1", CID, 1.0, "scheduler", "hourly")
    await records.save(store, a)
    await records.save(store, SnapshotRecord("vm2", CID, 2.0, "alice@host", snapshot_id="s2"))
    assert await records.recorded(store, "vm1") == {CID: a}
    await records.forget(store, "vm1", CID)
    await records.forget(store, "vm1", CID)  # gone already: fine
    assert await records.recorded(store, "vm1") == {} and list(await records.recorded(store, "vm2")) == [CID]
    with pytest.raises(RecordError):
        records.record_key("../vm", CID)
    with pytest.raises(RecordError, match="not readable by this build"):
        records.decode(b'{"v": [2, 0]}', "snapshots/vm1/x")


async def test_records_of_snapshots_gone_are_forgotten_and_a_lost_answer_is_adopted():
    from olvm_backup.engine.snapshots import SnapshotInfo
    from olvm_backup.snapshots.steps import UNANSWERED, forget_gone

    store, now = MemoryStore(), 1_000_000.0
    gone, lost, stale, young = (new_correlation_id() for _ in range(4))
    known = {gone: SnapshotRecord("vm1", gone, now - 10, "alice@host", snapshot_id="s-gone"),
             lost: SnapshotRecord("vm1", lost, now - 10, "scheduler", "hourly"),  # the engine's answer was lost
             stale: SnapshotRecord("vm1", stale, now - UNANSWERED - 1, "scheduler", "hourly"),
             young: SnapshotRecord("vm1", young, now - 10, "scheduler", "hourly")}
    for r in known.values():
        await records.save(store, r)
    snaps = [SnapshotInfo("s-lost", "vm1", describe("policy hourly x", lost), "ok", "regular", now - 5)]
    assert sorted(await forget_gone(store, "vm1", snaps, known, now=now)) == sorted([gone, stale])
    stored = await records.recorded(store, "vm1")
    assert stored == known and set(stored) == {lost, young} and stored[lost].snapshot_id == "s-lost"
