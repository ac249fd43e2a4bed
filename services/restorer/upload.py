"""Writing one disk of a restore point through an imageio upload: only data, zeros left sparse, chunks verified."""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Awaitable, Callable

from olvm_backup.chunkfetch import ChunkFetcher
from olvm_backup.errors import BackupError
from olvm_backup.format.diskmap import Segment
from olvm_backup.format.manifest import DiskRecord, Manifest
from olvm_backup.imageio import ImageioClient
from olvm_backup.imageio_writer import ThreadedWriter

log = logging.getLogger(__name__)

MIB = 1024 * 1024
WINDOW = 32 * MIB      # disk bytes planned and fetched per round
PREFETCH = 2           # rounds fetched ahead: PREFETCH + 1 windows in memory at most
MAX_PUT = 8 * MIB      # contiguous data sent per request


class RestoreDataError(BackupError):
    template = "disk {disk} at offset {offset}: {reason}"


def put_runs(plan: list[tuple[int, int, Segment | None]], max_put: int = MAX_PUT) -> list[list[Segment]]:
    """Contiguous data segments grouped into requests of at most `max_put` bytes; zero ranges are skipped."""
    runs: list[list[Segment]] = []
    size = 0
    for _, _, seg in plan:
        if seg is None:
            continue
        if runs and runs[-1][-1].end == seg.offset and size + seg.length <= max_put:
            runs[-1].append(seg)
            size += seg.length
        else:
            runs.append([seg])
            size = seg.length
    return runs


async def upload_disk(manifest: Manifest, disk: DiskRecord, fetcher: ChunkFetcher, client: ImageioClient,
                      writer: ThreadedWriter, progress: Callable[[int], Awaitable[None]]) -> int:
    """`progress(n)` after each window with the data bytes sent since the last call. Returns the data bytes
    sent. Fails loudly, naming disk and offset, on a missing or corrupt chunk."""

    async def fetch(start: int):
        plan = disk.map.read_plan(start, min(disk.size, start + WINDOW))
        wanted = {}
        for offset, _, seg in plan:
            if seg is None:
                continue
            if seg.digest not in manifest.chunks:
                raise RestoreDataError("the manifest has no location for its chunk", disk=disk.name, offset=offset)
            wanted[seg.digest] = manifest.chunks[seg.digest]
        return plan, await fetcher.fetch(wanted)

    sent = reported = 0
    slots = writer.slots  # bounds the requests in flight (and the chunks they hold), across windows

    async def put(offset: int, parts: list[memoryview]) -> None:
        nonlocal sent
        try:
            await writer.write(offset, parts)
            sent += sum(len(p) for p in parts)
        finally:
            slots.release()

    starts = list(range(0, disk.size, WINDOW))
    # Windows are fetched from the store PREFETCH rounds ahead; PUTs stream on across windows, no barrier.
    ahead: collections.deque[asyncio.Future] = collections.deque(
        asyncio.ensure_future(fetch(start)) for start in starts[:PREFETCH])
    queued = len(ahead)
    waited = {"store": 0.0, "imageio": 0.0}  # where the time goes: logged at the end
    try:
        async with asyncio.TaskGroup() as group:
            while ahead:
                t0 = time.monotonic()
                plan, chunks = await ahead.popleft()
                waited["store"] += time.monotonic() - t0
                if queued < len(starts):
                    ahead.append(asyncio.ensure_future(fetch(starts[queued])))
                    queued += 1
                for run in put_runs(plan):
                    body = _request_parts(disk, run, chunks)
                    t0 = time.monotonic()
                    await slots.acquire()
                    waited["imageio"] += time.monotonic() - t0
                    group.create_task(put(run[0].offset, body))
                del plan, chunks
                if sent > reported:
                    await progress(sent - reported)
                    reported = sent
    except BaseExceptionGroup as group_error:  # report the first real failure, as a sequential loop would
        raise next((e for e in group_error.exceptions if not isinstance(e, asyncio.CancelledError)),
                   group_error) from None
    finally:
        for future in ahead:
            future.cancel()
        await asyncio.gather(*ahead, return_exceptions=True)
    await progress(sent - reported)
    await client.flush()
    log.info("disk %s: %d data bytes sent; waited %.1fs for chunks from the store, %.1fs for imageio", disk.name,
             sent, waited["store"], waited["imageio"])
    return sent


def _request_parts(disk: DiskRecord, run: list[Segment], chunks: dict) -> list[memoryview]:
    """The verified chunk slices one PUT sends, in order; a chunk that failed to load fails here, loudly."""
    parts = []
    for seg in run:
        chunk = chunks[seg.digest]
        if isinstance(chunk, BaseException):
            raise RestoreDataError(str(chunk), disk=disk.name, offset=seg.offset)
        parts.append(memoryview(chunk)[seg.skip:seg.skip + seg.length])
    return parts
