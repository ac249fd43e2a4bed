"""The envelope every record travels in: msgpack map {"v": [major, minor], "type": name, "data": {...}}.

Decoding validates the data against the record's typed class. A reader
rejects an unknown major version (the layout changed incompatibly) and
accepts a newer minor (fields were only added: unknown fields are ignored).
"""
from __future__ import annotations

from typing import ClassVar, TypeVar

import msgpack
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import DecodeError, SchemaVersionError

SCHEMA_MAJOR = 1
# 1.1: ReadTask.chunk_topic; 1.2: ReadTask.connections; 1.3: StoreFault on store.faults; 1.4: the typed `outcome`
# of BackupEvent and RestoreEvent (what the CLI shows, no longer in `detail`) and ReadTask.extents; 1.5: TransferGone
# on read.results (a reader's report of a ticket imageio no longer knows); 1.6: ChunkData.codec "zstd+gcm" and
# "none+gcm" (an encrypted repository's sealed chunks); 1.7: PolicyEvent on policy.events (a backup policy's
# changes, with who made them); 1.8: RepositoryEvent on repository.events (what prune, forget and gc deleted,
# why, and protection set or lifted); 1.9: BackupRequest.strategy (cbt, or snapshot: disk image transfer).
# 1.10: BackupRequest.commands and RestoreRequest.commands (pre/post commands: CommandSpec).
SCHEMA_MINOR = 10

_REGISTRY: dict[str, type["Record"]] = {}

R = TypeVar("R", bound="Record")


class Record(BaseModel):
    """Base of every record type on the wire. Subclasses register themselves by class name."""

    model_config = ConfigDict(frozen=True, extra="ignore", strict=False)
    type_name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.type_name = cls.__name__
        if cls.__name__ in _REGISTRY:
            raise TypeError(f"record type {cls.__name__} declared twice")
        _REGISTRY[cls.__name__] = cls


def record_types() -> dict[str, type[Record]]:
    return dict(_REGISTRY)


def encode(record: Record) -> bytes:
    payload = {
        "v": [SCHEMA_MAJOR, SCHEMA_MINOR],
        "type": record.type_name,
        "data": record.model_dump(mode="python"),
    }
    return msgpack.packb(payload, use_bin_type=True)


def decode(raw: bytes | None, accepted: tuple[type[R], ...] | None = None) -> R:
    """Bytes to a validated record, or DecodeError saying why not."""
    if raw is None:
        raise DecodeError("empty record (tombstone)")
    try:
        payload = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except (msgpack.UnpackException, ValueError, TypeError) as e:
        raise DecodeError(f"not msgpack: {e}") from None
    if not isinstance(payload, dict) or not {"v", "type", "data"} <= payload.keys():
        raise DecodeError("not an envelope: expected a map with v, type and data")
    version = payload["v"]
    if not (isinstance(version, list) and len(version) == 2 and all(isinstance(x, int) for x in version)):
        raise DecodeError(f"bad version field {version!r}")
    if version[0] != SCHEMA_MAJOR:
        raise SchemaVersionError(
            "written by an incompatible build", version=f"{version[0]}.{version[1]}", supported=SCHEMA_MAJOR
        )
    name = payload["type"]
    cls = _REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        raise DecodeError(f"unknown record type {name!r}")
    if accepted is not None and cls not in accepted:
        raise DecodeError(
            f"record type {name} does not belong on this topic (expected {', '.join(c.type_name for c in accepted)})"
        )
    try:
        return cls.model_validate(payload["data"])
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<record>'}: {err['msg']}" for err in e.errors()[:5]
        )
        raise DecodeError(f"{name} fails validation: {problems}") from None
