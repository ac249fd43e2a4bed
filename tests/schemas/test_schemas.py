"""The wire contract: records round-trip typed, bad input is refused with a reason, and the contract stands alone."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest

import olvm_backup.errors
from olvm_backup.audit.trail import TRAIL_MAJOR, TRAIL_MINOR
from olvm_backup.crypto.keys import SLOT_MAJOR, SLOT_MINOR
from olvm_backup.format.manifest import MANIFEST_MAJOR, MANIFEST_MINOR
from olvm_backup.policy.model import FORMAT as POLICY_FORMAT
from olvm_backup.repository.chunkindex import INDEX_MAJOR, INDEX_MINOR
from olvm_backup.repository.gc import GC_MAJOR, GC_MINOR
from olvm_backup.repository.holds import HOLDS_MAJOR, HOLDS_MINOR
from olvm_backup.repository.keyring import CONFIG_MAJOR, CONFIG_MINOR
from olvm_backup.snapshots.records import RECORD_MAJOR, RECORD_MINOR
from schemas import (
    SCHEMA_MAJOR, SCHEMA_MINOR, BackupEvent, BackupOutcome, BackupRequest, ChunkData, DiskOutcome, ReadTask,
    RestoreEvent, RestoreOutcome, decode, encode,
)
from schemas.errors import DecodeError, SchemaVersionError
from schemas.topics import ALL_TOPICS, topic_table
from services.snapshotter.journal import JOURNAL_MAJOR, JOURNAL_MINOR
from services.snapshotter.once import MARKER_MAJOR, MARKER_MINOR

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
    assert f"Format version: **{SCHEMA_MAJOR}.{SCHEMA_MINOR}**" in doc, "TOPICS.md names another record version"


def test_format_document_names_the_versions_the_code_writes():
    doc = (REPO / "schemas" / "FORMAT.md").read_text()
    documented = dict(re.findall(r"^\| ([a-z ]+) \| (\d+\.\d+) \|", doc, re.MULTILINE))
    assert documented == {
        "manifest": f"{MANIFEST_MAJOR}.{MANIFEST_MINOR}",
        "pack index": f"{INDEX_MAJOR}.{INDEX_MINOR}",
        "backup journal": f"{JOURNAL_MAJOR}.{JOURNAL_MINOR}",
        "key slot": f"{SLOT_MAJOR}.{SLOT_MINOR}",
        "repository config": f"{CONFIG_MAJOR}.{CONFIG_MINOR}",
        "topic records": f"{SCHEMA_MAJOR}.{SCHEMA_MINOR}",
        "policy": "{}.{}".format(*POLICY_FORMAT),
        "condemned list": f"{GC_MAJOR}.{GC_MINOR}",
        "restore point hold": f"{HOLDS_MAJOR}.{HOLDS_MINOR}",
        "request marker": f"{MARKER_MAJOR}.{MARKER_MINOR}",
        "audit trail": f"{TRAIL_MAJOR}.{TRAIL_MINOR}",
        "snapshot record": f"{RECORD_MAJOR}.{RECORD_MINOR}",
    }, "schemas/FORMAT.md's table of versions is out of step with the code"
    assert f'"v": [{GC_MAJOR}, {GC_MINOR}]' in doc.split("## Garbage collection", 1)[1].split("##", 1)[0]
    # The sections' examples of each object write the same version.
    assert f'"v": [{MANIFEST_MAJOR}, {MANIFEST_MINOR}]' in doc.split("## Manifest", 1)[1].split("##", 1)[0]
    assert f'"v": [{INDEX_MAJOR}, {INDEX_MINOR}]' in doc.split("## Packs and their index", 1)[1].split("##", 1)[0]
    assert f'"v": [{JOURNAL_MAJOR}, {JOURNAL_MINOR}]' in doc.split("## Journal", 1)[1].split("##", 1)[0]
    assert '"v": [{}, {}]'.format(*POLICY_FORMAT) in doc.split("## Policies", 1)[1].split("##", 1)[0]
    assert f'"v": [{RECORD_MAJOR}, {RECORD_MINOR}]' in doc.split("## Snapshot records", 1)[1].split("##", 1)[0]
    keys_section = doc.split("## Keys", 1)[1].split("##", 1)[0]
    assert f'`config` is JSON in clear, read first by every build:\n`{{"v": [{CONFIG_MAJOR}, {CONFIG_MINOR}]' \
        in keys_section
    assert f'`{{"v": [{SLOT_MAJOR}, {SLOT_MINOR}], "id"' in keys_section


@pytest.mark.processes  # a fresh interpreter: this one has olvm_backup loaded already
def test_schemas_work_with_olvm_backup_unimportable():
    """schemas/ stands alone (tests/test_boundaries.py reads its imports; this runs it): with olvm_backup made
    unimportable a record round-trips, a bad one is refused with the contract's own error, and nothing of
    olvm_backup was loaded on the way."""
    script = ("import sys; sys.modules['olvm_backup'] = None\n"
              "import schemas\n"
              "from schemas import BackupRequest, decode, encode\n"
              "r = BackupRequest(request_id='r', vm='x', requested_at=1.0)\n"
              "assert decode(encode(r)) == r\n"
              "try:\n    decode(b'\\xc1')\nexcept schemas.DecodeError as e:\n    print('refused:', e)\n"
              "assert not any(m == 'olvm_backup' or m.startswith('olvm_backup.') for m in sys.modules"
              " if sys.modules[m] is not None)\n")
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "refused: cannot decode record: not msgpack" in run.stdout


def test_decode_errors_are_the_products_and_never_retried():
    assert olvm_backup.errors.DecodeError is DecodeError
    assert olvm_backup.errors.SchemaVersionError is SchemaVersionError
    assert DecodeError("x").retriable is False and issubclass(SchemaVersionError, DecodeError)
    assert str(SchemaVersionError("old", version="2.0", supported=1)) == \
        "unsupported schema version 2.0 (this build reads major 1): old"


def _completed() -> BackupEvent:
    return BackupEvent(request_id="r", backup_id="b", vm="web", kind="completed", at=1.0, outcome=BackupOutcome(
        duration=12.5, steps={"prepare": 0.1, "engine start": 2.0, "read and store": 9.0, "commit": 0.2},
        consistency="frozen", consistency_note="frozen by the engine", mode="incremental", bytes_read=5 << 20,
        bytes_stored=1 << 20, disks={"os": DiskOutcome(mode="incremental", bytes_read=4 << 20, bytes_new=1 << 20),
                                     "data": DiskOutcome(mode="full", reason="new disk", bytes_read=1 << 20)},
        vm_id="v1", to_checkpoint="cp2"))


def test_outcomes_travel_typed_and_keep_the_order_of_steps_and_disks():
    event = _completed()
    back = decode(encode(event), (BackupEvent,))
    assert back == event and isinstance(back.outcome.disks["data"], DiskOutcome)
    assert list(back.outcome.steps) == ["prepare", "engine start", "read and store", "commit"]
    assert list(back.outcome.disks) == ["os", "data"]
    restored = RestoreEvent(request_id="r", restore_point="b", kind="failed", at=1.0, outcome=RestoreOutcome(
        duration=3.0, bytes_sent=7, error_type="EngineError", kept=True))
    assert decode(encode(restored)).outcome == restored.outcome


def test_an_outcome_is_validated_and_a_newer_minor_may_add_to_it():
    doc = msgpack.unpackb(encode(_completed()), raw=False)
    doc["v"] = [1, 9]
    doc["data"]["outcome"]["added_later"] = 1
    doc["data"]["outcome"]["disks"]["os"]["added_later"] = 2
    assert decode(msgpack.packb(doc)).outcome == _completed().outcome
    doc["data"]["outcome"]["disks"]["os"]["mode"] = "sometimes"
    with pytest.raises(DecodeError, match="outcome.disks.os.mode"):
        decode(msgpack.packb(doc))


def test_an_event_from_before_outcomes_still_decodes():
    old = {"v": [1, 3], "type": "BackupEvent", "data": {"request_id": "r", "vm": "web", "kind": "completed", "at": 1.0,
                                                         "detail": {"mode": "full", "bytes_read": 1}}}
    event = decode(msgpack.packb(old))
    assert event.outcome is None and event.detail["mode"] == "full"
