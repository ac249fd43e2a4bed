"""A running backup's journal carries its format version: read back whatever minor, refused at another major, and
a journal this build cannot read is left alone while the others are still cleaned up. The janitor closes what an
ended job's journal names, its own process's too, until the engine lets it; a killed job is told of once."""
from __future__ import annotations

import json
import re

import pytest

from olvm_backup.objectstore.memory import MemoryStore
from services.snapshotter import journal
from services.snapshotter.journal import (
    JOURNAL_MAJOR, JOURNAL_MINOR, Journal, JournalEntry, JournalError, clean_leftovers, decode_journal,
    encode_journal, process_name,
)


def _entry(backup_id: str = "b1") -> JournalEntry:
    return JournalEntry(backup_id, "vm1", "r1", engine_backup=backup_id, transfers=["t1"], started_at=1.0,
                        owner="gone-host:1")


def test_a_journal_is_written_with_its_version_and_read_back():
    raw = encode_journal(_entry())
    assert json.loads(raw)["v"] == [JOURNAL_MAJOR, JOURNAL_MINOR]
    assert decode_journal(raw, "jobs/b1.json") == _entry()


@pytest.mark.parametrize("version", [None, [1, 0], [1, 5]])  # before journals had one, this one, a newer minor
def test_a_journal_of_this_major_is_read(version):
    doc = {k: v for k, v in json.loads(encode_journal(_entry())).items() if k != "v"}
    if version:
        doc |= {"v": version, "added_later": 1}
    assert decode_journal(json.dumps(doc).encode(), "jobs/b1.json") == _entry()


@pytest.mark.parametrize("raw, reason", [
    (json.dumps({"v": [2, 0], "backup_id": "b1"}), "format [2, 0] is not readable by this build (major 1)"),
    (json.dumps({"v": [1, 0], "vm_id": "vm1"}), "malformed"),
    ("not json", "unreadable"),
])
def test_a_journal_this_build_cannot_read_is_refused_by_name(raw, reason):
    with pytest.raises(JournalError, match=re.escape(f"journal jobs/b1.json: {reason}")):
        decode_journal(raw.encode(), "jobs/b1.json")


async def test_cleaning_up_leaves_a_journal_of_another_major_alone(monkeypatch):
    closed = []

    async def cancel_transfer(engine, transfer_id):
        closed.append(transfer_id)
        return True

    async def finalize_backup(engine, vm_id, backup_id):
        closed.append(backup_id)
        return "succeeded"

    monkeypatch.setattr(journal, "cancel_transfer", cancel_transfer)
    monkeypatch.setattr(journal, "finalize_backup", finalize_backup)
    store = MemoryStore()
    await store.put("jobs/a-newer.json", json.dumps({"v": [2, 0], "backup_id": "a-newer"}).encode())
    await store.put("jobs/b1.json", encode_journal(_entry("b1")))  # abandoned: not refreshed for long
    cleaned = await clean_leftovers(store, engine=None)
    assert [e.backup_id for e in cleaned] == ["b1"] and closed == ["t1", "b1"]
    assert [info.key async for info in store.list("jobs/")] == ["jobs/a-newer.json"]


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch):
    """What this process knows of its own journals starts empty in every test."""
    monkeypatch.setattr(journal, "_mine", {})


class Engine:
    """What the janitor asks of the engine, faked: `away` while an outage lasts; what it closed, in order."""

    def __init__(self, monkeypatch) -> None:
        self.away = False
        self.closed: list[str] = []
        monkeypatch.setattr(journal, "cancel_transfer", self.cancel_transfer)
        monkeypatch.setattr(journal, "finalize_backup", self.finalize_backup)

    async def cancel_transfer(self, engine, transfer_id):
        if self.away:
            return False  # as cbt.cancel_transfer says when the engine would not end it
        self.closed.append(transfer_id)
        return True

    async def finalize_backup(self, engine, vm_id, backup_id):
        if self.away:
            raise RuntimeError("engine: finalize backup: gave up after 6 attempt(s)")
        self.closed.append(backup_id)
        return "succeeded"


async def test_a_job_whose_cleanup_failed_is_closed_by_its_own_snapshotters_janitor_once_the_engine_answers(
        monkeypatch):
    engine, store, told = Engine(monkeypatch), MemoryStore(), []

    async def interrupted(entry):
        told.append(entry.backup_id)

    running = Journal(store, JournalEntry("run", "vm1", "r0", engine_backup="run", owner=process_name()))
    await running.save()
    ended = Journal(store, JournalEntry("b1", "vm1", "r1", engine_backup="b1", transfers=["t1", "t2"],
                                        owner=process_name()))
    await ended.save()
    engine.away = True
    assert not await ended.hand_over(None, "failed")
    # The engine stays away: every sweep tries, the journal stays, naming what is still open.
    for _ in range(2):
        assert await clean_leftovers(store, None, interrupted) == []
    kept = decode_journal(await store.get("jobs/b1.json"), "jobs/b1.json")
    assert (kept.ended, kept.transfers, kept.engine_backup) == ("failed", ["t1", "t2"], "b1")
    # It answers again: this same process's next sweep closes it all; the running job is left alone.
    engine.away = False
    assert [e.backup_id for e in await clean_leftovers(store, None, interrupted)] == ["b1"]
    assert engine.closed == ["t1", "t2", "b1"]
    assert [info.key async for info in store.list("jobs/")] == ["jobs/run.json"]
    assert told == [], "a job that said how it ended is not told of again"


async def test_a_job_that_ended_while_the_store_was_away_is_still_known_ended_by_its_process(monkeypatch):
    engine, store = Engine(monkeypatch), MemoryStore()
    job = Journal(store, JournalEntry("b1", "vm1", "r1", engine_backup="b1", transfers=["t1"], owner=process_name()))
    await job.save()
    job.entry.ended = "failed"  # what hand_over marks first, before a save that the store refused
    told = []

    async def interrupted(entry):
        told.append(entry.backup_id)

    assert [e.backup_id for e in await clean_leftovers(store, None, interrupted)] == ["b1"]
    assert told == [] and engine.closed == ["t1", "b1"]


async def test_a_killed_job_is_told_of_once_however_many_sweeps_its_cleanup_takes(monkeypatch):
    engine, store, told = Engine(monkeypatch), MemoryStore(), []

    async def interrupted(entry):
        told.append(entry.request_id)

    await store.put("jobs/b1.json", encode_journal(_entry("b1")))  # its snapshotter is gone
    engine.away = True
    assert await clean_leftovers(store, None, interrupted) == []
    assert await clean_leftovers(store, None, interrupted) == []
    engine.away = False
    assert [e.backup_id for e in await clean_leftovers(store, None, interrupted)] == ["b1"]
    assert told == ["r1"] and engine.closed == ["t1", "b1"]
    assert [info.key async for info in store.list("jobs/")] == []
