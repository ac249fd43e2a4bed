"""The repository's record of each snapshot olvm-backup creates: `snapshots/<vm_id>/<correlation_id>`.

Written BEFORE the engine is asked to create the snapshot, so a snapshot whose creation was cut short (a killed
process, a lost answer) is still known as ours by its description's correlation id; completed with the snapshot's
id once the engine answers, deleted once the engine no longer lists the snapshot. JSON with a format version
(schemas/FORMAT.md), in clear like the backup journals: it names only engine ids, a policy and who asked.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

from ..errors import BackupError, ObjectNotFound
from ..objectstore import ObjectStore

PREFIX = "snapshots/"
RECORD_MAJOR = 1
RECORD_MINOR = 0
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # one key segment


class RecordError(BackupError):
    template = "snapshot record {key}: {reason}"


@dataclass(frozen=True)
class SnapshotRecord:
    vm_id: str
    correlation_id: str
    at: float                     # when it was asked for (UNIX seconds)
    by: str                       # who asked: "alice@host", or "scheduler"
    policy: str = ""              # the hypervisor-snapshots policy that took it, "" when taken by hand
    snapshot_id: str | None = None  # the engine's id, once it answered


def record_key(vm_id: str, correlation_id: str) -> str:
    for what, value in (("VM id", vm_id), ("correlation id", correlation_id)):
        if not _ID.match(value or ""):
            raise RecordError(f"{value!r} is not a {what}", key=f"{PREFIX}{vm_id}/{correlation_id}")
    return f"{PREFIX}{vm_id}/{correlation_id}"


def encode(record: SnapshotRecord) -> bytes:
    return json.dumps({"v": [RECORD_MAJOR, RECORD_MINOR], **asdict(record)}).encode()


def decode(raw: bytes, key: str) -> SnapshotRecord:
    try:
        doc = json.loads(raw)
        major = doc.pop("v")[0]
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        raise RecordError("not a snapshot record", key=key) from None
    if major != RECORD_MAJOR:
        raise RecordError(f"format {major}.x is not readable by this build (major {RECORD_MAJOR})", key=key)
    known = {f: doc[f] for f in SnapshotRecord.__dataclass_fields__ if f in doc}  # a newer minor may add fields
    try:
        return SnapshotRecord(**known)
    except TypeError as e:
        raise RecordError(f"incomplete ({e})", key=key) from None


async def save(store: ObjectStore, record: SnapshotRecord) -> None:
    await store.put(record_key(record.vm_id, record.correlation_id), encode(record))


async def recorded(store: ObjectStore, vm_id: str) -> dict[str, SnapshotRecord]:
    """The VM's records, by correlation id."""
    out: dict[str, SnapshotRecord] = {}
    prefix = f"{PREFIX}{vm_id}/"
    async for info in store.list(prefix):
        try:
            raw = await store.get(info.key)
        except ObjectNotFound:  # deleted since the listing
            continue
        record = decode(raw, info.key)
        out[record.correlation_id] = record
    return out


async def forget(store: ObjectStore, vm_id: str, correlation_id: str) -> None:
    try:
        await store.delete(record_key(vm_id, correlation_id))
    except ObjectNotFound:
        pass
