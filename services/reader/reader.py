"""Reader: read tasks in, chunks and task results out. A consumer group: run 1..N.

The task's offset is committed only after its result is published, so a
reader killed mid-task loses nothing: the task goes to another reader.
"""
from __future__ import annotations

import logging
import os
import socket
import time

from olvm_backup.repository.chunkindex import ChunkIndex
from olvm_backup.repository.gc import CondemnedCache
from olvm_backup.config import EngineSettings, Settings
from olvm_backup.planning import Extent
from olvm_backup.imageio import TicketGone, Transfer
from olvm_backup.kafka import Bus, Consumer, Message
from olvm_backup.kafka.bus import TopicGone
from olvm_backup.kafka.follow import Follower
from olvm_backup.format.chunks import ChunkCodec
from olvm_backup.repository.sealedstore import open_sealed
from schemas import ChunkData, ReadTask, TransferGone
from schemas.topics import CHUNKS, PACKS, READ_RESULTS, READ_TASKS

from .reading import PARALLEL_CHUNKS, read_task

log = logging.getLogger(__name__)

GROUP = "readers"


class Reader:
    def __init__(self, bus: Bus, index: ChunkIndex, engine: EngineSettings, codec: ChunkCodec,
                 name: str = "reader", condemned: CondemnedCache | None = None) -> None:
        self._bus = bus
        self._codec = codec
        self._condemned = condemned  # packs garbage collection is taking away: never deduplicated against
        self._name = name
        self._engine = engine
        self._index = index

    async def on_task(self, task: ReadTask, where: Message) -> None:
        started = time.monotonic()
        if task.chunk_topic not in await self._bus.topics():
            # The snapshotter deletes a wave's topic once the wave is stored or the backup is over: this task
            # is a late redelivery or belongs to a failed backup, and nobody waits for its result.
            log.info("task %s: skipped, its backup wave is over (topic %s is gone)", task.task_id, task.chunk_topic)
            return
        try:
            await self._read(task, started)
        except* TopicGone:  # raised by one of the task's parallel chunks
            log.info("task %s: abandoned, its backup wave ended meanwhile (topic %s is gone)", task.task_id,
                     task.chunk_topic)
        except* TicketGone as gone:
            # The ticket expired or was removed mid-backup, or the snapshotter ended the transfer itself (this is a
            # late copy of a task already read). Only the snapshotter can tell: it is told, and judges.
            error = _first(gone)
            log.warning("task %s: the disk's transfer is gone (%s); told the snapshotter", task.task_id, error)
            await self._bus.publish(READ_RESULTS, TransferGone(
                backup_id=task.backup_id, task_id=task.task_id, disk_id=task.disk_id, transfer_url=task.transfer_url,
                error=str(error), reader=self._name, at=time.time()), key=task.backup_id)
        finally:
            self._bus.forget(task.chunk_topic)

    async def _read(self, task: ReadTask, started: float) -> None:
        log.info("task %s: reading disk %s [%d, %d)", task.task_id, task.disk_id, task.offset,
                 task.offset + task.length)
        if self._condemned is not None:
            dropped, back = self._index.exclude(await self._condemned.packs())
            if dropped or back:  # and where a repack may have moved chunks, or what a spared pack holds
                learned = await self._index.refresh(self._condemned.store)
                log.info("task %s: %d known chunks are in packs being garbage-collected, %d spared pack(s) back "
                         "(%d pack indexes read)", task.task_id, dropped, back, learned)

        async def publish_chunk(chunk: ChunkData) -> None:
            await self._bus.publish(CHUNKS, chunk, key=chunk.digest, member=task.chunk_topic)

        # Within the task's share of the ticket's connections: beyond it a connection would wait for a free one.
        async with Transfer(task.transfer_url, task.proxy_url, ca_file=self._engine.ca_file,
                            insecure=self._engine.insecure, local_socket=self._engine.imageio_local_socket,
                            connections=min(task.connections, PARALLEL_CHUNKS)) as data:
            if task.extents is not None:
                extents = [Extent(*e) for e in task.extents]
            else:  # a task from before format 1.4
                extents = await data.extents(task.incremental)
            result = await read_task(task, data, extents, self._index, publish_chunk, self._codec)
            over = ("the daemon's local socket" if data.local else "TLS") + (
                " through the proxy" if data.url == task.proxy_url else "")
        await self._bus.publish(READ_RESULTS, result, key=task.backup_id)
        log.info("task %s: read %d bytes, %d chunks, %d new bytes in %.2fs over %s", task.task_id,
                 result.bytes_read, len(result.chunks), result.bytes_new, time.monotonic() - started, over)


def _first(group: BaseException) -> BaseException:
    while isinstance(group, BaseExceptionGroup):
        group = group.exceptions[0]
    return group


async def main(settings: Settings) -> None:
    name = f"reader@{socket.gethostname()}:{os.getpid()}"
    index = ChunkIndex()
    async with open_sealed(settings) as (store, sealer), Bus(settings.kafka, client_id=name) as bus:
        # Follow new packs first, then load the stored indexes: no pack falls between the two.
        async with Follower(settings.kafka, PACKS, index.add_record, client_id=name + "/packs"):
            await index.load(store)
            reader = Reader(bus, index, settings.engine, ChunkCodec.for_writing(sealer), name, CondemnedCache(store))
            async with Consumer(settings.kafka, bus, [READ_TASKS], GROUP, client_id=name, max_batch=1) as consumer:
                await consumer.run(reader.on_task)
