"""The snapshotter's door for backup requests: a request id that already ran, or runs now, is not run again
(once.py says how that is decided; this module reads and writes the markers and publishes the duplicate's event).

One GET per request (its marker), a second only for a marker that says running (its backup's journal). A store
that cannot be read runs the request: the job then reports what the store answers, rather than the request being
dropped unseen; a marker this build cannot read refuses it (dead-lettered with the reason).
"""
from __future__ import annotations

import logging
import time

from olvm_backup import metrics
from olvm_backup.errors import ObjectNotFound, StoreError
from olvm_backup.format.manifest import Manifest
from olvm_backup.objectstore import ObjectStore
from schemas import BackupRequest
from schemas.topics import BACKUP_EVENTS

from .job import BackupJob, Context
from .snapjob import SnapshotBackupJob
from .journal import JournalEntry, JournalError, decode_journal, process_name
from .journal import PREFIX as JOURNALS
from .once import Duplicate, MarkerState, RequestMarker, decode_marker, duplicate_event, encode_marker, marker_key
from .once import verdict

log = logging.getLogger(__name__)


async def read_marker(store: ObjectStore, request_id: str) -> RequestMarker | None:
    key = marker_key(request_id)
    try:
        return decode_marker(await store.get(key), key)
    except ObjectNotFound:
        return None


async def _journal(store: ObjectStore, backup_id: str) -> JournalEntry | None:
    key = f"{JOURNALS}{backup_id}.json"
    try:
        return decode_journal(await store.get(key), key)
    except ObjectNotFound:
        return None
    except JournalError as e:  # another major's: its owner's liveness is the marker's to tell
        log.warning("%s", e)
        return None


async def admit(store: ObjectStore, request_id: str) -> Duplicate | None:
    """None: run the request. Otherwise the marker that makes this delivery a duplicate."""
    try:
        marker = await read_marker(store, request_id)
        journal = await _journal(store, marker.backup_id) if marker and marker.state == "running" else None
    except StoreError as e:
        log.warning("request %s: could not read its marker (%s); running it", request_id, e)
        return None
    return verdict(marker, journal, time.time())


class Marking:
    """Writes a request's marker as its job goes: "running" at the start, then how it ended. Never raises: a
    marker that could not be written costs at most a second run of a redelivered request, not the backup."""

    def __init__(self, store: ObjectStore, request_id: str) -> None:
        self._store = store
        self.request_id = request_id

    async def mark(self, backup_id: str, state: MarkerState) -> None:
        marker = RequestMarker(self.request_id, backup_id, state, time.time(), process_name())
        try:
            await self._store.put(marker_key(self.request_id), encode_marker(marker))
        except StoreError as e:
            log.error("request %s: could not mark it %s (backup %s): %s", self.request_id, state, backup_id, e)


async def run_once(ctx: Context, request: BackupRequest) -> Manifest | None:
    """Run the request as a backup unless its id already ran or runs (then say so on backup.events)."""
    duplicate = await admit(ctx.store, request.request_id)
    if duplicate is not None:
        log.info("request %s is a duplicate of backup %s (%s): not run", request.request_id,
                 duplicate.marker.backup_id, duplicate.marker.state)
        await ctx.bus.publish(BACKUP_EVENTS, duplicate_event(request, duplicate, time.time()), key=request.request_id)
        return None
    job = SnapshotBackupJob if request.strategy == "snapshot" else BackupJob
    started = time.monotonic()
    manifest = await job(ctx, request, marking=Marking(ctx.store, request.request_id)).run()
    # A job ends completed (a manifest) or failed (its event said why); an interrupted one raised, and runs again.
    metrics.job_ended("backup", "completed" if manifest is not None else "failed", time.monotonic() - started)
    return manifest
