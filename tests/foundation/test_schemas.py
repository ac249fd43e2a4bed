"""The wire contract: records round-trip typed, bad input is refused with a reason."""
from __future__ import annotations

from pathlib import Path

import msgpack
import pytest

from olvm_backup.errors import DecodeError, SchemaVersionError
from schemas import BackupRequest, ChunkData, ReadTask, decode, encode
from schemas.topics import ALL_TOPICS, topic_table

REPO = Path(__file__).resolve().parents[2]


def test_round_trip_keeps_types_and_values():
    request = BackupRequest(request_id="r1", vm="web01", mode="incremental", exclude_disks=["scratch"],
                            requested_at=1700000000.5)
    back = decode(encode(request), (BackupRequest,))
    assert isinstance(back, BackupRequest)
    assert back == request


def test_binary_payload_survives():
    chunk = ChunkData(backup_id="b", task_id="t", digest="ab" * 32, raw_size=3, codec="none", data=b"\x00\xff\x10")
    assert decode(encode(chunk)).data == b"\x00\xff\x10"


@pytest.mark.parametrize("raw, reason", [
    (b"\xc1", "not msgpack"),
    (msgpack.packb([1, 2, 3]), "not an envelope"),
    (msgpack.packb({"v": [1, 0], "type": "NoSuchRecord", "data": {}}), "unknown record type"),
    (msgpack.packb({"v": [1, 0], "type": "BackupRequest", "data": {"vm": "x"}}), "request_id"),
    (msgpack.packb({"v": [1, 0], "type": "BackupRequest",
                    "data": {"request_id": "r", "vm": "x", "mode": "sometimes", "requested_at": 1.0}}), "mode"),
    (None, "tombstone"),
])
def test_malformed_records_are_refused_with_reason(raw, reason):
    with pytest.raises(DecodeError) as err:
        decode(raw)
    assert reason in str(err.value)


def test_unknown_major_version_is_refused():
    raw = msgpack.packb({"v": [2, 0], "type": "BackupRequest",
                         "data": {"request_id": "r", "vm": "x", "requested_at": 1.0}})
    with pytest.raises(SchemaVersionError, match="unsupported schema version 2.0"):
        decode(raw)


def test_newer_minor_version_with_extra_fields_is_read():
    raw = msgpack.packb({"v": [1, 7], "type": "BackupRequest",
                         "data": {"request_id": "r", "vm": "x", "requested_at": 1.0, "added_later": True}})
    assert decode(raw).vm == "x"


def test_record_on_wrong_topic_is_refused():
    task = ReadTask(backup_id="b", task_id="t", disk_id="d", transfer_url="https://h/images/t", incremental=False,
                    offset=0, length=1, chunk_size=1, chunk_topic="chunks.b.0")
    with pytest.raises(DecodeError, match="does not belong on this topic"):
        decode(encode(task), (BackupRequest,))


def test_topics_document_matches_the_declarations():
    doc = (REPO / "schemas" / "TOPICS.md").read_text()
    assert topic_table() in doc, "schemas/TOPICS.md is out of date: paste schemas.topics.topic_table() into it"
    assert len({t.name for t in ALL_TOPICS}) == len(ALL_TOPICS)
