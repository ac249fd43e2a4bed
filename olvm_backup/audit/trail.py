"""The audit trail's objects (pure): what the auditor keeps, how a batch is written, and how it is read back.

The auditor (services/auditor) appends what happened, in batches, to `audit/<YYYY-MM-DD>/<unix-ms>-<random>`
(FORMAT.md): JSON lines, a header line {"audit": [major, minor], "written_at", "writer"} and then one entry a line,
{"topic", "type", "record", "at"}: the topic's name (without the installation's prefix), the record's type and
fields as JSON, and when it happened (the record's own time). The day in the key is the day (UTC) the object was
written, never before what it holds happened, so the days since a time are all the objects a reader of "since
then" has to list.

The broker an embedded stack runs keeps its topics in memory: after a restart the topics are empty and offsets
start at 0 again, and a redelivery (the auditor stopped before committing) writes an entry twice. Entries are
therefore told apart by what they are, never by where they were read: the identity of an entry is its topic and
its record's fields, so reading drops the same record written twice and keeps two that differ.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Iterable

from schemas import Record
from schemas.topics import (
    BACKUP_EVENTS, BACKUP_REQUESTS, POLICY_EVENTS, REPOSITORY_EVENTS, RESTORE_EVENTS, RESTORE_REQUESTS, Topic,
)

from ..errors import BackupError

PREFIX = "audit/"
TRAIL_MAJOR = 1
TRAIL_MINOR = 0
DAY = 86400.0

AUDITED: tuple[Topic, ...] = (BACKUP_REQUESTS, BACKUP_EVENTS, RESTORE_REQUESTS, RESTORE_EVENTS, POLICY_EVENTS,
                              REPOSITORY_EVENTS)
# The steps of a backup or restore kept: its progress (bytes, messages, stored tasks) is the live feed's, not history.
BACKUP_KINDS = ("requested", "accepted", "started", "stored", "completed", "failed", "cancelled")
RESTORE_KINDS = ("requested", "accepted", "started", "completed", "failed")
FINAL = ("completed", "failed", "cancelled")


class TrailError(BackupError):
    template = "audit trail {key}: {reason}"


class SinceError(BackupError):
    template = "--since {text!r}: {reason}"


def kept(topic: Topic, record: Record) -> bool:
    """Whether the auditor keeps this record of an audited topic."""
    if topic is BACKUP_EVENTS:
        return getattr(record, "kind", None) in BACKUP_KINDS
    if topic is RESTORE_EVENTS:
        return getattr(record, "kind", None) in RESTORE_KINDS
    return topic in AUDITED


@dataclass(frozen=True)
class Entry:
    topic: str                 # backup.requests, backup.events, restore.requests, restore.events, policy.events,
                               # repository.events
    type: str                  # the record's type, e.g. BackupEvent
    record: dict[str, Any]     # its fields, as JSON has them
    at: float                  # when it happened

    @property
    def identity(self) -> str:
        """The same record on the same topic is the same entry, wherever and however often it was read."""
        canonical = json.dumps([self.topic, self.type, self.record], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def entry_of(topic: Topic, record: Record) -> Entry:
    fields = record.model_dump(mode="json")
    at = fields.get("at", fields.get("requested_at"))
    return Entry(topic.name, record.type_name, fields, float(at) if at is not None else time.time())


def day_of(t: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(t))


def object_key(written_at: float, suffix: str) -> str:
    """`audit/<day>/<unix-ms>-<suffix>`: listed in the order written, the suffix keeps two writers apart."""
    return f"{PREFIX}{day_of(written_at)}/{int(written_at * 1000):013d}-{suffix}"


def day_prefixes(since: float, until: float) -> list[str]:
    """The prefixes of the days from `since` to `until` (UTC), both included."""
    days, t = [], since
    while True:
        days.append(f"{PREFIX}{day_of(t)}/")
        if day_of(t) == day_of(until) or t > until:
            return days
        t += DAY


def encode_batch(entries: Iterable[Entry], written_at: float, writer: str) -> bytes:
    lines = [{"audit": [TRAIL_MAJOR, TRAIL_MINOR], "written_at": written_at, "writer": writer}]
    lines += [{"topic": e.topic, "type": e.type, "record": e.record, "at": e.at} for e in entries]
    return "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()


def decode_batch(raw: bytes, key: str) -> list[Entry]:
    """The entries of one object, or TrailError (another major, or not an audit object). A newer minor's extra
    fields are passed over."""
    try:
        lines = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
        version = lines[0]["audit"] if lines else None
    except (ValueError, UnicodeDecodeError, TypeError, KeyError) as e:
        raise TrailError(f"unreadable ({e})", key=key) from None
    if not (isinstance(version, list) and version and version[0] == TRAIL_MAJOR):
        raise TrailError(f"format {version!r} is not readable by this build (major {TRAIL_MAJOR})", key=key)
    try:
        return [Entry(str(d["topic"]), str(d["type"]), dict(d["record"]), float(d["at"])) for d in lines[1:]]
    except (KeyError, TypeError, ValueError) as e:
        raise TrailError(f"malformed entry ({e})", key=key) from None


def dedupe(entries: Iterable[Entry]) -> list[Entry]:
    seen: set[str] = set()
    out = []
    for e in entries:
        if e.identity not in seen:
            seen.add(e.identity)
            out.append(e)
    return out


_SINCE = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNIT = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str) -> float:
    """`30m`, `12h`, `7d`, `2w`: seconds."""
    m = _SINCE.match(text)
    if not m:
        raise SinceError("expected a number and m, h, d or w (30m, 12h, 7d, 2w)", text=text)
    return int(m.group(1)) * _UNIT[m.group(2)]
