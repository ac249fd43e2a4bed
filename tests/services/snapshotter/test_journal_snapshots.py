"""The janitor and the snapshot strategy's journal: before the commit the job's own snapshot goes (found by its
description when the job died before the engine told its id), after it the parent's kept one; a user's snapshot
never; what the engine refuses is kept for the next sweep."""
from __future__ import annotations

import uuid

import pytest

from olvm_backup.engine import EngineUnavailable
from olvm_backup.engine.snapshots import SnapshotInfo
from olvm_backup.objectstore.memory import MemoryStore
from olvm_backup.repository.catalog import manifest_key
from services.snapshotter import journal
from services.snapshotter.journal import JournalEntry, clean_leftovers, encode_journal
from services.snapshotter.layers import snapshot_description

NEW, OLD = str(uuid.UUID(int=1)), str(uuid.UUID(int=2))


class FakeEngine:
    """The VM's snapshots as the engine lists them; removals recorded, refused while `refuse` is set."""

    def __init__(self) -> None:
        self.snapshots = {
            "s-new": SnapshotInfo("s-new", "vm1", snapshot_description(NEW, "r1"), "ok", "regular", 3.0),
            "s-old": SnapshotInfo("s-old", "vm1", snapshot_description(OLD, "r0"), "ok", "regular", 1.0),
            "s-user": SnapshotInfo("s-user", "vm1", f"olvm-backup {NEW} is what I call mine", "ok", "regular", 2.0),
        }
        self.removed: list[str] = []
        self.refuse = False

    async def list_snapshots(self, engine, vm_id, policy=None):
        return list(self.snapshots.values())

    async def remove_snapshot(self, engine, vm_id, snapshot_id, *, prefix, correlation_id=None, **kw):
        assert self.snapshots[snapshot_id].description.startswith(prefix)
        if self.refuse:
            raise EngineUnavailable("Cannot remove Snapshot. Snapshot is locked")
        self.removed.append(snapshot_id)
        del self.snapshots[snapshot_id]
        return True


@pytest.fixture
def engine(monkeypatch) -> FakeEngine:
    fake = FakeEngine()
    monkeypatch.setattr(journal.snapshots, "list_snapshots", fake.list_snapshots)
    monkeypatch.setattr(journal.snapshots, "remove_snapshot", fake.remove_snapshot)
    return fake


def killed(**fields) -> JournalEntry:
    return JournalEntry(NEW, "vm1", "r1", owner="gone-host:1", snapshot_of=snapshot_description(NEW, "r1"),
                        previous_snapshot="s-old", **fields)


async def test_an_uncommitted_backup_loses_its_snapshot_found_by_description(engine):
    store = MemoryStore()
    await store.put(f"jobs/{NEW}.json", encode_journal(killed()))  # died before the engine told the id
    [cleaned] = await clean_leftovers(store, engine)
    assert engine.removed == ["s-new"] and set(engine.snapshots) == {"s-old", "s-user"}
    assert cleaned.backup_id == NEW and [k async for k in store.list("jobs/")] == []


async def test_a_committed_backup_keeps_its_snapshot_and_loses_the_parents(engine):
    store = MemoryStore()
    # Killed between its commit and saying so in the journal: the catalog tells.
    await store.put(f"jobs/{NEW}.json", encode_journal(killed(snapshot="s-new")))
    await store.put(manifest_key("vm1", NEW), b"the manifest")
    await clean_leftovers(store, engine)
    assert engine.removed == ["s-old"] and set(engine.snapshots) == {"s-new", "s-user"}


async def test_what_the_engine_refuses_is_kept_for_the_next_sweep(engine):
    store = MemoryStore()
    await store.put(f"jobs/{NEW}.json", encode_journal(killed(snapshot="s-new")))
    engine.refuse = True
    assert await clean_leftovers(store, engine) == []
    assert engine.removed == [] and [i.key async for i in store.list("jobs/")] == [f"jobs/{NEW}.json"]
    engine.refuse = False
    await clean_leftovers(store, engine)
    assert engine.removed == ["s-new"] and [i.key async for i in store.list("jobs/")] == []
