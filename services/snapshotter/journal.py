"""What a running backup holds open on the engine, kept in object storage.

A snapshotter killed mid-backup leaves its journal behind; a snapshotter that
starts, and every running one from time to time, closes what an abandoned
journal names: cancels the transfers, finalizes the engine backup. Nothing
stays locked on the engine because a process died. A journal is abandoned
when its owner is a dead process on this host, or when its owner has not
refreshed it for STALE_AFTER seconds (a running backup refreshes it every
HEARTBEAT): several snapshotters can share a bucket without closing each
other's backups. A journal carries its format version, checked on read like
the manifest's (schemas/FORMAT.md).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from dataclasses import asdict, dataclass, field, fields

from olvm_backup.engine import Engine
from olvm_backup.engine.cbt import cancel_transfer, finalize_backup
from olvm_backup.errors import BackupError
from olvm_backup.objectstore import ObjectStore

log = logging.getLogger(__name__)

PREFIX = "jobs/"
HEARTBEAT = 10.0     # seconds between refreshes of a running backup's journal
STALE_AFTER = 60.0   # a journal not refreshed for this long belongs to a snapshotter that is gone
# The journal's format: JSON of JournalEntry's fields and "v": [major, minor]. A newer minor may only add fields
# (passed over here); journals written before it had a version have none and are 1.0.
JOURNAL_MAJOR = 1
JOURNAL_MINOR = 0


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


def abandoned(entry: JournalEntry, now: float) -> bool:
    host, _, pid = entry.owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        if int(pid) == os.getpid():
            return False
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


async def running_backups(store: ObjectStore) -> list[str]:
    """Backups some snapshotter is running now (or was, when it was killed): the ones with a journal."""
    return [info.key[len(PREFIX):].removesuffix(".json") async for info in store.list(PREFIX)]


async def clean_leftovers(store: ObjectStore, engine: Engine) -> list[JournalEntry]:
    """Close everything abandoned journals name; returns what was cleaned."""
    cleaned = []
    async for info in store.list(PREFIX):
        try:
            entry = decode_journal(await store.get(info.key), info.key)
        except JournalError as e:  # another major's (or damaged): left alone, the others are still cleaned
            log.error("not cleaning up after %s: %s", info.key, e)
            continue
        if not abandoned(entry, time.time()):
            continue  # a backup another snapshotter (or this one) is running
        log.warning("cleaning up after interrupted backup %s of VM %s (owner %s)", entry.backup_id, entry.vm_id,
                    entry.owner or "unknown")
        for transfer_id in entry.transfers:
            await cancel_transfer(engine, transfer_id)
        if entry.engine_backup:
            try:
                await finalize_backup(engine, entry.vm_id, entry.engine_backup)
            except Exception as e:  # keep the journal: the next start tries again
                log.error("could not finalize engine backup %s: %s", entry.engine_backup, e)
                continue
        await store.delete(info.key)
        cleaned.append(entry)
    return cleaned
