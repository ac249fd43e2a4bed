"""The auditor: keeps every request, start, completion, failure, restore and policy change in the object store, in
batches (olvm_backup/audit/trail.py), so the history outlives the broker (an embedded stack's keeps its topics in
memory only).

At least once: a batch's offsets are committed only after its object is written. A batch is written when the
topics are read to their end (a poll came back empty), when it holds MAX_ENTRIES, or FLUSH_EVERY seconds after its
first entry, whichever comes first; a batch whose object could not be written is kept, with its offsets, and
written on the next poll. A record read twice (a stop before the commit, a rebalance, a broker that restarted
empty) is written twice and read back once.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Callable

from aiokafka import TopicPartition

from olvm_backup.audit.trail import AUDITED, Entry, encode_batch, entry_of, kept, object_key
from olvm_backup.errors import StoreError
from olvm_backup.kafka.consumer import Message, RecordLoop
from olvm_backup.objectstore import ObjectStore
from schemas import Record

log = logging.getLogger(__name__)

FLUSH_EVERY = 5.0    # seconds an entry may wait in a batch while records keep coming
MAX_ENTRIES = 1000   # entries in one object at most


class Auditor:
    def __init__(self, store: ObjectStore, loop: RecordLoop, prefix: str, name: str, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._loop = loop
        self._topics = {t.full_name(prefix): t for t in AUDITED}
        self.name = name
        self._clock = clock
        self._pending: list[Entry] = []
        self._since = 0.0  # when the first pending entry came
        self._held: dict[TopicPartition, int] = {}  # offsets of a batch not written yet
        self.written: list[str] = []  # the keys of the objects written, in order

    async def run(self) -> None:
        try:
            await self._loop.run(self.handle, commit_each=False, after_batch=self.after_batch)
        except asyncio.CancelledError:
            # Stopping: what was read is written now rather than read again at the next start.
            await self.flush()
            raise

    async def handle(self, record: Record, where: Message) -> None:
        topic = self._topics[where.topic]
        if kept(topic, record):
            if not self._pending:
                self._since = self._clock()
            self._pending.append(entry_of(topic, record))

    async def after_batch(self, empty: bool) -> None:
        if empty or len(self._pending) >= MAX_ENTRIES or (
                self._pending and self._clock() - self._since >= FLUSH_EVERY):
            await self.flush()

    async def flush(self) -> None:
        """Write what is pending as one object, then commit the offsets read so far (also those of records not
        kept: they need no object). Kept for the next call if the store does not take it."""
        offsets = self._held | self._loop.take_processed()
        entries = self._pending
        if entries:
            now = self._clock()
            key = object_key(now, secrets.token_hex(4))
            try:
                await self._store.put(key, encode_batch(entries, now, self.name))
            except StoreError as e:
                log.error("could not write %d audit entries (kept, tried again): %s", len(entries), e)
                self._held = offsets
                return
            self.written.append(key)
            self._pending = []
            log.info("kept %d audit entries in %s", len(entries), key)
        self._held = {}
        await self._loop.commit(offsets)
