"""A backup request runs once: its durable marker, and what a second delivery of it is told.

A request's id comes from its cause (the CLI's is a fresh uuid; a schedule's names the policy, the VM and the
slot), so a request delivered twice (the same slot fired by two schedulers, a redelivery after a rebalance) carries
the same id. The snapshotter that runs it first writes `requests/<request id>` (FORMAT.md): "running" with the
backup's id when the job starts, then how it ended. Whichever snapshotter receives the request again reads that
one object and does not run it again when

- it ended (completed, failed or cancelled): the delivery gets one final `cancelled` event that names the backup
  the request ran as and how it ended (TOPICS.md), never a second `completed`;
- it is running and its owner is alive (the backup's journal is refreshed, journal.py): a `progress` event says so;
  the running job sends the request's final event.

A "running" marker whose owner is gone (a killed snapshotter: its journal is abandoned, or was never written and
the marker is older than the journal's STALE_AFTER) runs again from the start, as an interrupted backup always has.
This module is the pure part: the marker's format, the verdict and the duplicate's event; gate.py does the I/O.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Literal
from urllib.parse import quote

from olvm_backup.errors import BackupError
from schemas import BackupEvent, BackupRequest

from .journal import JournalEntry, abandoned

PREFIX = "requests/"
# The marker's format: JSON of RequestMarker's fields and "v": [major, minor]. A newer minor may only add fields.
MARKER_MAJOR = 1
MARKER_MINOR = 0

MarkerState = Literal["running", "completed", "failed", "cancelled"]
ENDED = ("completed", "failed", "cancelled")


class MarkerError(BackupError):
    template = "request marker {key}: {reason}"


@dataclass
class RequestMarker:
    request_id: str
    backup_id: str       # the backup the request runs (or ran) as
    state: MarkerState
    at: float            # when the state was written
    owner: str = ""      # host:pid of the snapshotter that ran it (journal.process_name)


def marker_key(request_id: str) -> str:
    """`requests/<request id>`, the id quoted so that any id is one object under the prefix."""
    return PREFIX + quote(request_id, safe="")


def encode_marker(marker: RequestMarker) -> bytes:
    return json.dumps({"v": [MARKER_MAJOR, MARKER_MINOR], **asdict(marker)}).encode()


def decode_marker(raw: bytes, key: str) -> RequestMarker:
    """The marker saved at `key`, or MarkerError saying why not (another major version, or not a marker)."""
    try:
        doc = json.loads(raw)
        version = doc.get("v")
    except (ValueError, AttributeError) as e:
        raise MarkerError(f"unreadable ({e})", key=key) from None
    if not (isinstance(version, list) and version and version[0] == MARKER_MAJOR):
        raise MarkerError(f"format {version!r} is not readable by this build (major {MARKER_MAJOR})", key=key)
    known = {f.name for f in fields(RequestMarker)}
    try:
        marker = RequestMarker(**{k: v for k, v in doc.items() if k in known})
    except TypeError as e:
        raise MarkerError(f"malformed ({e})", key=key) from None
    if marker.state not in ("running", *ENDED):
        raise MarkerError(f"unknown state {marker.state!r}", key=key)
    return marker


@dataclass(frozen=True)
class Duplicate:
    """The request already ran (`final`: this delivery ends it again) or runs now (its job sends the final event)."""

    marker: RequestMarker

    @property
    def final(self) -> bool:
        return self.marker.state in ENDED


def verdict(marker: RequestMarker | None, journal: JournalEntry | None, now: float) -> Duplicate | None:
    """Whether a delivery of the marker's request is a duplicate (None: run it). `journal` is the running backup's
    journal, when the marker says running and the journal is there: its heartbeat tells whether its owner lives.
    Without one (not saved yet, or already closed) the marker stands in for it, written at the job's start."""
    if marker is None:
        return None
    if marker.state in ENDED:
        return Duplicate(marker)
    owner = journal or JournalEntry(marker.backup_id, "", marker.request_id, owner=marker.owner,
                                    alive_at=marker.at)
    return None if abandoned(owner, now) else Duplicate(marker)


_ENDED_AS = {"completed": "completed", "failed": "failed", "cancelled": "was cancelled"}


def duplicate_event(request: BackupRequest, duplicate: Duplicate, now: float) -> BackupEvent:
    """What the duplicate delivery publishes on backup.events. No backup_id: this delivery ran no backup (the one
    the request ran as is in the message and in `detail.duplicate_of`)."""
    m = duplicate.marker
    detail = {"duplicate_of": m.backup_id, "state": m.state}
    if duplicate.final:
        return BackupEvent(request_id=request.request_id, vm=request.vm, kind="cancelled", at=now, detail=detail,
                           message=f"duplicate request: {request.request_id} already ran as backup {m.backup_id}, "
                                   f"which {_ENDED_AS[m.state]}; not run again")
    return BackupEvent(request_id=request.request_id, vm=request.vm, kind="progress", at=now, detail=detail,
                       message=f"duplicate request: {request.request_id} is running as backup {m.backup_id} "
                               f"(snapshotter {m.owner or 'unknown'}); not run a second time")
