"""What a running backup holds open on the engine, kept in object storage.

A snapshotter killed mid-backup leaves its journal behind, and so does a job
that failed or was stopped while the engine could not be made to close what
it held (an engine outage longer than the retry budget). A snapshotter that
starts, and every running one from time to time (the janitor), closes what an
abandoned journal names: cancels the transfers, finalizes the engine backup,
and deletes the journal only once all of it has ended on the engine, trying
again on every sweep until then. Nothing stays locked on the engine because a
process died or the engine was away. A journal is abandoned when its job has
ended (`ended`; the job's own process knows that of its jobs even before the
journal says it), when its owner is a dead process on this host, or when its
owner has not refreshed it for STALE_AFTER seconds (a running backup
refreshes it every HEARTBEAT): several snapshotters can share a bucket
without closing each other's backups. A journal carries its format version,
checked on read like the manifest's (schemas/FORMAT.md).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Awaitable, Callable

from olvm_backup.engine import Engine
from olvm_backup.engine import snapshots
from olvm_backup.engine.cbt import cancel_transfer, finalize_backup
from olvm_backup.errors import BackupError
from olvm_backup.objectstore import ObjectStore
from olvm_backup.retry import ENGINE_TIDY
from olvm_backup.repository.catalog import manifest_key

log = logging.getLogger(__name__)

PREFIX = "jobs/"
HEARTBEAT = 10.0     # seconds between refreshes of a running backup's journal
STALE_AFTER = 60.0   # a journal not refreshed for this long belongs to a snapshotter that is gone
# Seconds the janitor (and a failed job's own cleanup) waits for a snapshot's removal to finish: housekeeping does not
# hold the snapshotter up for a long merge or a lasting lock; the next sweep looks again.
SNAPSHOT_WAIT = 120.0
# The journal's format: JSON of JournalEntry's fields and "v": [major, minor]. A newer minor may only add fields
# (passed over here); journals written before it had a version have none and are 1.0.
JOURNAL_MAJOR = 1
# 1.1: `ended`; 1.2: the snapshot strategy's `snapshot_of`, `snapshot`, `previous_snapshot`, `committed`; 1.3:
# `commands`, the pre/post command phases the backup started (commands.py)
JOURNAL_MINOR = 3


class JournalError(BackupError):
    template = "journal {key}: {reason}"


@dataclass
class JournalEntry:
    backup_id: str
    vm_id: str
    request_id: str
    engine_backup: str | None = None
    transfers: list[str] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    owner: str = ""          # host:pid of the snapshotter running it
    alive_at: float = 0.0    # when its owner last saved it
    # How its job ended, once it has: "failed", or "interrupted" (its snapshotter stopped; the request runs
    # again), or "completed" (committed, with something left to close). Set, the job's event is out and any janitor
    # closes what the journal still names. Added after 1.0: absent, the job was still running (or was killed).
    ended: str = ""
    # The snapshot strategy (1.2): the description of the VM snapshot the job makes (set before it asks the engine),
    # its id once the engine answered, the parent restore point's kept snapshot, and whether the manifest is written.
    # Before the commit the new snapshot is what to remove; after it, the previous one.
    snapshot_of: str = ""
    snapshot: str = ""
    previous_snapshot: str = ""
    committed: bool = False
    # 1.3: the pre/post command phases started ("before", "after"), in order: each runs once per backup.
    commands: list[str] = field(default_factory=list)


def encode_journal(entry: JournalEntry) -> bytes:
    return json.dumps({"v": [JOURNAL_MAJOR, JOURNAL_MINOR], **asdict(entry)}).encode()


def decode_journal(raw: bytes, key: str) -> JournalEntry:
    """The entry saved at `key`, or JournalError saying why not (another major version, or not a journal)."""
    try:
        doc = json.loads(raw)
        version = doc.get("v", [1, 0])
    except (ValueError, AttributeError) as e:
        raise JournalError(f"unreadable ({e})", key=key) from None
    if not (isinstance(version, list) and version and version[0] == JOURNAL_MAJOR):
        raise JournalError(f"format {version!r} is not readable by this build (major {JOURNAL_MAJOR})", key=key)
    known = {f.name for f in fields(JournalEntry)}
    try:
        return JournalEntry(**{k: v for k, v in doc.items() if k in known})
    except TypeError as e:
        raise JournalError(f"malformed ({e})", key=key) from None


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# This process's journals not deleted yet, by backup id: the truth about its own jobs, also when the store could
# not be told (a job ended while the store was away). Kept per process, as `owner` is.
_mine: dict[str, JournalEntry] = {}


def abandoned(entry: JournalEntry, now: float) -> bool:
    if entry.ended:
        return True
    host, _, pid = entry.owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        if int(pid) == os.getpid():
            # One of this process's jobs that has ended, or of an earlier process with this pid (a restarted
            # container's snapshotter is pid 1 again).
            mine = _mine.get(entry.backup_id)
            return mine is None or bool(mine.ended)
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True  # its snapshotter died on this host: no need to wait for it to go stale
        except PermissionError:
            pass
    return now - entry.alive_at > STALE_AFTER


class Journal:
    def __init__(self, store: ObjectStore, entry: JournalEntry) -> None:
        self._store = store
        self.entry = entry

    @property
    def key(self) -> str:
        return f"{PREFIX}{self.entry.backup_id}.json"

    async def save(self) -> None:
        self.entry.alive_at = time.time()
        _mine[self.entry.backup_id] = self.entry
        await self._store.put(self.key, encode_journal(self.entry))

    async def keep_alive(self) -> None:
        """Refresh the journal until cancelled, so that other snapshotters know its backup still runs."""
        while True:
            await asyncio.sleep(HEARTBEAT)
            try:
                await self.save()
            except Exception as e:  # the store is away for a moment: the next beat tries again
                log.warning("could not refresh the journal of backup %s: %s", self.entry.backup_id, e)

    async def close(self) -> None:
        await self._store.delete(self.key)
        _mine.pop(self.entry.backup_id, None)

    async def hand_over(self, engine: Engine, ended: str) -> bool:
        """Once its job has ended (`ended`): close what the journal still names on the engine. True when nothing is
        left open and the journal is deleted; otherwise it is kept, marked ended, for the janitor (any snapshotter's,
        this one's too) to close the rest once the engine answers."""
        closed = await close_on_engine(engine, self.entry)
        self.entry.ended = ended  # in memory before the store: this process's janitor knows even if the store does not
        if closed:
            await self.close()
            return True
        await self.save()
        return False


async def running_backups(store: ObjectStore) -> list[str]:
    """Backups some snapshotter is running now (or was, when it was killed): the ones with a journal."""
    return [info.key[len(PREFIX):].removesuffix(".json") async for info in store.list(PREFIX)]


async def close_on_engine(engine: Engine, entry: JournalEntry) -> bool:
    """Cancel the transfers and finalize the engine backup `entry` names, forgetting each once it has ended, and
    remove the snapshot of ours it no longer needs; True when nothing is left open. Idempotent: what has ended
    already is only looked at."""
    for transfer_id in list(entry.transfers):
        if await cancel_transfer(engine, transfer_id) and transfer_id in entry.transfers:
            entry.transfers.remove(transfer_id)
    if entry.engine_backup:
        try:
            await finalize_backup(engine, entry.vm_id, entry.engine_backup)
            entry.engine_backup = None
        except Exception as e:  # the engine is away: kept, tried again
            log.error("could not finalize engine backup %s: %s", entry.engine_backup, e)
    if not entry.transfers:  # a snapshot with a transfer still open on it cannot go yet
        await _remove_snapshots(engine, entry)
    return not entry.transfers and not entry.engine_backup and not snapshots_left(entry)


def snapshots_left(entry: JournalEntry) -> list[str]:
    """The snapshots the journal still has to remove (a description: one whose id the engine never told)."""
    if entry.committed:
        return [entry.previous_snapshot] if entry.previous_snapshot else []
    return [entry.snapshot or entry.snapshot_of] if entry.snapshot or entry.snapshot_of else []


async def _remove_snapshots(engine: Engine, entry: JournalEntry) -> None:
    """Uncommitted, the job's own snapshot goes (found by its description when the job died before the engine told
    its id); committed, the parent's kept one. Only ever a snapshot whose description names its backup."""
    from .layers import backup_of, snapshot_prefix  # the strategy's naming, one place
    try:
        if entry.committed:
            if entry.previous_snapshot:
                found = {s.snapshot_id: s for s in await snapshots.list_snapshots(engine, entry.vm_id,
                                                                                  policy=ENGINE_TIDY)}
                old = found.get(entry.previous_snapshot)
                owner = backup_of(old.description) if old is not None else None
                if old is not None and owner:
                    await snapshots.remove_snapshot(engine, entry.vm_id, old.snapshot_id,
                                                    prefix=snapshot_prefix(owner), correlation_id=entry.backup_id,
                                                    policy=ENGINE_TIDY, deadline=SNAPSHOT_WAIT)
                entry.previous_snapshot = ""
            return
        if not (entry.snapshot or entry.snapshot_of):
            return
        prefix = snapshot_prefix(entry.backup_id)
        mine = [s.snapshot_id for s in await snapshots.list_snapshots(engine, entry.vm_id, policy=ENGINE_TIDY)
                if s.snapshot_id == entry.snapshot or (entry.snapshot_of and s.description == entry.snapshot_of)]
        for snapshot_id in mine:
            await snapshots.remove_snapshot(engine, entry.vm_id, snapshot_id, prefix=prefix,
                                            correlation_id=entry.backup_id, policy=ENGINE_TIDY,
                                            deadline=SNAPSHOT_WAIT)
        entry.snapshot = entry.snapshot_of = ""
    except Exception as e:  # the engine is away, or the snapshot stays locked: kept, tried again
        log.error("backup %s: could not remove its snapshot of VM %s: %s", entry.backup_id, entry.vm_id, e)


async def clean_leftovers(store: ObjectStore, engine: Engine,
                          interrupted: Callable[[JournalEntry], Awaitable[None]] | None = None) -> list[JournalEntry]:
    """Close everything abandoned journals name; returns the journals closed and deleted. A journal whose job never
    said how it ended (its snapshotter was killed) is told to `interrupted` once, and marked so. One the engine
    could not close yet is kept, saying what is still open, and tried again on the next call."""
    cleaned = []
    async for info in store.list(PREFIX):
        try:
            entry = decode_journal(await store.get(info.key), info.key)
        except JournalError as e:  # another major's (or damaged): left alone, the others are still cleaned
            log.error("not cleaning up after %s: %s", info.key, e)
            continue
        if not abandoned(entry, time.time()):
            continue  # a backup another snapshotter (or this one) is running
        if entry.owner == process_name():
            entry = _mine.get(entry.backup_id, entry)  # what this process knows of its own job is newer
        if not entry.ended:
            log.warning("cleaning up after interrupted backup %s of VM %s (owner %s)", entry.backup_id,
                        entry.vm_id, entry.owner or "unknown")
            if interrupted is not None:
                await interrupted(entry)
            entry.ended = "interrupted"
        else:
            log.info("closing what backup %s (%s) left open on the engine: %s", entry.backup_id, entry.ended,
                     ", ".join([*entry.transfers, *filter(None, [entry.engine_backup]),
                                *(f"snapshot {s}" for s in snapshots_left(entry))]) or "nothing")
        if entry.snapshot_of and not entry.committed and await store.head(manifest_key(entry.vm_id, entry.backup_id)):
            entry.committed = True  # killed between its commit and saying so: its snapshot is the one to keep
        if await close_on_engine(engine, entry):
            await store.delete(info.key)
            _mine.pop(entry.backup_id, None)
            cleaned.append(entry)
        else:  # kept, marked ended (told) and without what did end: the next sweep tries the rest
            await store.put(info.key, encode_journal(entry))
    return cleaned
