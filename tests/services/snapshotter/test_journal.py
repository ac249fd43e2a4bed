"""A running backup's journal carries its format version: read back whatever minor, refused at another major, and
a journal this build cannot read is left alone while the others are still cleaned up."""
from __future__ import annotations

import json
import re

import pytest

from olvm_backup.objectstore.memory import MemoryStore
from services.snapshotter import journal
from services.snapshotter.journal import (
    JOURNAL_MAJOR, JOURNAL_MINOR, JournalEntry, JournalError, clean_leftovers, decode_journal, encode_journal,
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

    async def finalize_backup(engine, vm_id, backup_id):
        closed.append(backup_id)

    monkeypatch.setattr(journal, "cancel_transfer", cancel_transfer)
    monkeypatch.setattr(journal, "finalize_backup", finalize_backup)
    store = MemoryStore()
    await store.put("jobs/a-newer.json", json.dumps({"v": [2, 0], "backup_id": "a-newer"}).encode())
    await store.put("jobs/b1.json", encode_journal(_entry("b1")))  # abandoned: not refreshed for long
    cleaned = await clean_leftovers(store, engine=None)
    assert [e.backup_id for e in cleaned] == ["b1"] and closed == ["t1", "b1"]
    assert [info.key async for info in store.list("jobs/")] == ["jobs/a-newer.json"]
