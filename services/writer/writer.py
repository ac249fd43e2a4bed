"""Writer: chunks in, pack objects (S3 multipart) and pack records out. A consumer group: run 1..N.

Chunks arrive on the chunk topics of running backup waves; the writers share
them through leases (olvm_backup/kafka/leased.py). Kafka offsets are committed
only after the pack holding the chunks is sealed and announced, so a writer
killed mid-pack loses nothing: another writer re-reads those chunks (storing a
chunk twice is harmless). A pack the store refuses ends the writer the same way,
after a StoreFault says so to the backups the pack served.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Callable

from olvm_backup import metrics
from olvm_backup.config import Settings
from olvm_backup.errors import BackupError
from olvm_backup.kafka import Bus, LeasedConsumer, Message
from olvm_backup.repository.sealedstore import open_sealed
from olvm_backup.repository.packs import OpenPack, PackBuilder
from olvm_backup.repository.uploads import AbandonedUploads
from olvm_backup.stack.space import full_disk
from schemas import ChunkData, PackStored, StoreFault
from schemas.topics import CHUNKS, PACKS, STORE_FAULTS, WRITER_LEASES, WRITERS_GROUP

log = logging.getLogger(__name__)

FLUSH_AFTER_IDLE = 0.2   # seconds without a new chunk before a partial pack is sealed (ends a wave quickly)
MAX_PACK_AGE = 10.0      # seconds a pack may stay open while chunks trickle in


class PackRefused(BackupError):
    template = "the object store refused pack {pack}: {reason}"


class Writer:
    """Fills one pack while the previous one is sealed in the background (its last parts travel and the store
    completes the upload, which some stores take hundreds of ms to do for a 64 MiB pack). One seal at a time, so
    packs are announced and offsets committed in order, and no offset is committed before the pack holding its
    chunk is durable.

    A pack the store refuses (a part or the completion failing after the client's retries) ends the writer at
    the end of the batch, with nothing committed from that pack on: the error is latched instead of raised in
    the chunk handler, where the consumer loop would retry the chunk alone and go on committing past the lost
    pack."""

    def __init__(self, bus: Bus, consumer: LeasedConsumer, packs: PackBuilder, name: str, *,
                 explain: Callable[[BackupError], BackupError] = lambda error: error) -> None:
        self._bus = bus
        self._explain = explain  # what a store's refusal means, when its answer does not say (a full disk)
        self._consumer = consumer
        self._packs = packs
        self._name = name
        self._last_chunk = 0.0
        self._sealing: asyncio.Task | None = None
        self._backups: set[str] = set()  # the backups whose chunks the open pack holds
        self._refused: PackRefused | None = None

    async def on_chunk(self, chunk: ChunkData, where: Message) -> None:
        if self._refused is not None:
            return  # not committed: it comes back, with the rest of the batch, once the writer is restarted
        self._backups.add(chunk.backup_id)
        try:
            added = await self._packs.add(chunk.digest, chunk.codec, chunk.raw_size, chunk.data)
        except BackupError as e:
            await self._refuse(self._packs.detach(), self._backups, e)
            return
        if not added:
            metrics.WRITER_DUPLICATE_CHUNKS.inc()
            metrics.WRITER_DUPLICATE_BYTES.inc(len(chunk.data))
        self._last_chunk = time.monotonic()
        if self._packs.full:
            await self.flush()

    async def after_batch(self, empty: bool) -> None:
        if self._packs.empty:
            await self._settle()  # a later offset must not be committed before an earlier pack is sealed
        if self._refused is not None:
            raise self._refused
        if self._packs.empty:
            await self._consumer.commit_processed()  # dead letters and nothing else: commit right away
            return
        now = time.monotonic()
        if (empty and now - self._last_chunk >= FLUSH_AFTER_IDLE) or now - self._packs.opened_at >= MAX_PACK_AGE:
            await self.flush()

    async def flush(self) -> None:
        """Hand the open pack, with the offsets of its chunks, to a background seal."""
        if self._packs.empty:
            return
        await self._settle()
        if self._refused is not None:
            return  # nothing more is sealed or committed: the batch's end ends the writer
        offsets = self._consumer.take_processed()
        backups, self._backups = self._backups, set()
        self._sealing = asyncio.create_task(self._seal(self._packs.detach(), backups, offsets))

    async def _settle(self) -> None:
        """Wait for the seal in flight (a refused one has latched its error by then)."""
        task, self._sealing = self._sealing, None
        if task is not None:
            await task

    async def _seal(self, pack: OpenPack, backups: set[str], offsets: dict) -> None:
        try:
            pack_key, entries = await pack.seal()
        except BackupError as e:
            await self._refuse(pack, backups, e)
            return
        except BaseException:
            await pack.abort()
            raise
        await self._bus.publish(PACKS, PackStored(pack_key=pack_key, entries=entries, writer=self._name,
                                                  at=time.time()), key=pack_key)
        log.info("sealed %s: %d chunks, %d bytes", pack_key, len(entries), sum(e[2] for e in entries))
        _count_sealed(entries)
        await self._consumer.commit(offsets)

    async def _refuse(self, pack: OpenPack, backups: set[str], error: BackupError) -> None:
        """Abort the pack, latch the refusal and tell the backups whose chunks the pack held (best effort: the
        broker's trouble must not hide the store's)."""
        await pack.abort()
        error = self._explain(error)
        self._refused = PackRefused(str(error), pack=pack.pack_key)
        log.error("%s (%d chunks of %d backup(s))", self._refused, len(pack.entries), len(backups))
        if not backups:
            return
        try:
            await self._bus.publish(STORE_FAULTS, StoreFault(
                writer=self._name, backup_ids=sorted(backups), chunks=max(1, len(pack.entries)),
                error=str(error)[:500], at=time.time()), key=self._name)
        except Exception as e:
            log.error("could not report the store fault: %s", e)

    async def stop(self) -> None:
        """Drop what is not sealed: a seal in flight and the open pack (their chunks will be redelivered)."""
        task, self._sealing = self._sealing, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._packs.abort()


def _count_sealed(entries: list[tuple[str, int, int, int, str]]) -> None:
    """A sealed pack's chunks in the metrics: (digest, offset, stored size, raw size, codec) each."""
    metrics.PACKS_STORED.inc()
    metrics.CHUNKS_STORED.inc(len(entries))
    metrics.STORED_BYTES.inc(sum(e[2] for e in entries))
    metrics.STORED_RAW_BYTES.inc(sum(e[3] for e in entries))


async def main(settings: Settings) -> None:
    name = f"writer@{socket.gethostname()}:{os.getpid()}"
    async with open_sealed(settings) as (store, _), Bus(settings.kafka, client_id=name) as bus:
        consumer = LeasedConsumer(settings.kafka, bus, CHUNKS, WRITER_LEASES, WRITERS_GROUP, client_id=name,
                                  max_batch=64)
        packs = PackBuilder(store, max_size=settings.pipeline.pack_size)
        writer = Writer(bus, consumer, packs, name,
                        explain=lambda error: full_disk(settings, error, settings.pipeline.pack_size))
        async with consumer:
            # Uploads that killed writers left: the store would keep their parts for good.
            tidy = asyncio.create_task(AbandonedUploads(store).keep_sweeping(), name="abandoned uploads")
            try:
                await consumer.run(lambda chunk, where: writer.on_chunk(chunk, where), commit_each=False,
                                   after_batch=writer.after_batch, poll_ms=100)
            finally:
                tidy.cancel()
                await asyncio.gather(tidy, return_exceptions=True)
                await writer.stop()
