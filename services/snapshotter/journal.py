"""What a running backup holds open on the engine, kept in object storage.

A snapshotter killed mid-backup leaves its journal behind; the next one to
start reads it and closes what it names: cancels the transfers, finalizes the
engine backup. Nothing stays locked on the engine because a process died.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field

from olvm_backup.engine import Engine
from olvm_backup.engine.cbt import cancel_transfer, finalize_backup
from olvm_backup.objectstore import ObjectStore

log = logging.getLogger(__name__)

PREFIX = "jobs/"


@dataclass
class JournalEntry:
    backup_id: str
    vm_id: str
    request_id: str
    engine_backup: str | None = None
    transfers: list[str] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)


class Journal:
    def __init__(self, store: ObjectStore, entry: JournalEntry) -> None:
        self._store = store
        self.entry = entry

    @property
    def key(self) -> str:
        return f"{PREFIX}{self.entry.backup_id}.json"

    async def save(self) -> None:
        await self._store.put(self.key, json.dumps(asdict(self.entry)).encode())

    async def close(self) -> None:
        await self._store.delete(self.key)


async def running_backups(store: ObjectStore) -> list[str]:
    """Backups some snapshotter is running now (or was, when it was killed): the ones with a journal."""
    return [info.key[len(PREFIX):].removesuffix(".json") async for info in store.list(PREFIX)]


async def clean_leftovers(store: ObjectStore, engine: Engine) -> list[JournalEntry]:
    """Close everything earlier snapshotters left open; returns what was cleaned."""
    cleaned = []
    async for info in store.list(PREFIX):
        entry = JournalEntry(**json.loads(await store.get(info.key)))
        log.warning("cleaning up after interrupted backup %s of VM %s", entry.backup_id, entry.vm_id)
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
