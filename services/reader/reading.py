"""Reading one task: its extents, aligned chunks, zero and dedup skipping, chunks and a result out."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from olvm_backup import metrics
from olvm_backup.repository.chunkindex import ChunkIndex
from olvm_backup.format import chunks as chunkfmt
from olvm_backup.format.chunks import ChunkCodec
from olvm_backup.planning import Extent, chunk_ranges, clip_extents, zero_ranges
from olvm_backup.imageio import Transfer
from schemas import ChunkData, ReadTask, TaskResult

PARALLEL_CHUNKS = 4  # chunks in flight per task: overlaps the network with hashing and compression


@dataclass
class TaskOutcome:
    chunks: list[tuple[int, int, str]] = field(default_factory=list)
    zeros: list[tuple[int, int]] = field(default_factory=list)
    bytes_read: int = 0
    bytes_new: int = 0


async def read_task(
    task: ReadTask,
    client: Transfer,
    extents: list[Extent],
    index: ChunkIndex,
    publish_chunk: Callable[[ChunkData], Awaitable[None]],
    codec: ChunkCodec,
) -> TaskResult:
    """Read the task's chunks; publish the new ones, named and stored by `codec` (sealed in an encrypted
    repository, so they travel the chunk topic as they will rest in the store)."""
    end = task.offset + task.length
    mine = clip_extents(extents, task.offset, end)
    out = TaskOutcome(zeros=zero_ranges(mine))
    sent: set[str] = set()
    limit = asyncio.Semaphore(PARALLEL_CHUNKS)

    async def one(offset: int, length: int) -> None:
        try:
            data = await client.read(offset, length)
            out.bytes_read += length
            metrics.READ_BYTES.inc(length)
            if chunkfmt.is_zero(data):
                out.zeros.append((offset, length))  # allocated but zero: never stored
                metrics.ZERO_BYTES.inc(length)
                return
            digest = await asyncio.to_thread(codec.name, data)
            out.chunks.append((offset, length, digest))
            if digest in index or digest in sent:
                metrics.READ_CHUNKS.labels("deduplicated").inc()
                metrics.DEDUPLICATED_BYTES.inc(length)
                return  # the store holds it already (or this task just sent it)
            sent.add(digest)
            metrics.READ_CHUNKS.labels("new").inc()
            kind, stored = await asyncio.to_thread(codec.store, data, digest)
            await publish_chunk(ChunkData(backup_id=task.backup_id, task_id=task.task_id, digest=digest,
                                          raw_size=length, codec=kind, data=stored))
            out.bytes_new += len(stored)
        finally:
            limit.release()

    async with asyncio.TaskGroup() as group:
        for offset, length in chunk_ranges(mine, task.chunk_size):
            await limit.acquire()  # bounds the chunks in memory: released when a chunk is done
            group.create_task(one(offset, length))
    out.chunks.sort()
    out.zeros.sort()
    return TaskResult(backup_id=task.backup_id, task_id=task.task_id, disk_id=task.disk_id, offset=task.offset,
                      length=task.length, chunks=out.chunks, zeros=out.zeros, bytes_read=out.bytes_read,
                      bytes_new=out.bytes_new)
