"""Writing one disk of a restore point through an imageio upload: only data, zeros left sparse, chunks verified."""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Awaitable, Callable

from olvm_backup.repository.chunkfetch import ChunkFetcher
from olvm_backup.errors import BackupError
from olvm_backup.format.diskmap import Segment
from olvm_backup.format.manifest import DiskRecord, Manifest
from olvm_backup.imageio import Transfer
from olvm_backup.concurrency import first_failure

log = logging.getLogger(__name__)

MIB = 1024 * 1024
WINDOW = 32 * MIB      # disk bytes planned and fetched per round
PREFETCH = 1           # rounds fetched ahead: PREFETCH + 1 windows in memory at most
PROGRESS_EVERY = 1.0    # seconds between progress events
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


class Windows:
    """A disk's read plan window by window, each with its chunks fetched from the store (and verified), fetched
    PREFETCH windows ahead. Opened before the engine has the disk and the transfer ready, so the first windows
    come in meanwhile."""

    def __init__(self, manifest: Manifest, disk: DiskRecord, fetcher: ChunkFetcher) -> None:
        self._manifest = manifest
        self._disk = disk
        self._fetcher = fetcher
        self._starts = list(range(0, disk.size, WINDOW))
        self._queued = 0
        self._ahead: collections.deque[asyncio.Future] = collections.deque()
        self.waited = 0.0  # seconds the consumer waited for the store

    async def __aenter__(self) -> "Windows":
        while len(self._ahead) < PREFETCH and self._queue_next():
            pass
        return self

    async def __aexit__(self, *exc) -> None:
        for future in self._ahead:
            future.cancel()
        await asyncio.gather(*self._ahead, return_exceptions=True)
        self._ahead.clear()

    def _queue_next(self) -> bool:
        if self._queued >= len(self._starts):
            return False
        self._ahead.append(asyncio.ensure_future(self._fetch(self._starts[self._queued])))
        self._queued += 1
        return True

    async def _fetch(self, start: int):
        disk = self._disk
        plan = disk.map.read_plan(start, min(disk.size, start + WINDOW))
        wanted = {}
        for offset, _, seg in plan:
            if seg is None:
                continue
            if seg.digest not in self._manifest.chunks:
                raise RestoreDataError("the manifest has no location for its chunk", disk=disk.name, offset=offset)
            wanted[seg.digest] = self._manifest.chunks[seg.digest]
        return plan, await self._fetcher.fetch(wanted)

    @property
    def fetcher(self) -> ChunkFetcher:
        return self._fetcher

    def __aiter__(self) -> "Windows":
        return self

    async def __anext__(self):
        if not self._ahead:
            raise StopAsyncIteration
        t0 = time.monotonic()
        window = await self._ahead.popleft()
        self.waited += time.monotonic() - t0
        self._queue_next()
        return window


async def upload_disk(disk: DiskRecord, windows: Windows, writer: Transfer,
                      progress: Callable[[int], Awaitable[None]]) -> int:
    """Returns the data bytes sent. `progress(n)` gets the bytes sent since its last call, at most every
    PROGRESS_EVERY seconds (each call waits for the broker while PUTs could be starting). Fails loudly, naming
    disk and offset, on a missing or corrupt chunk."""
    sent = reported = 0
    reported_at = time.monotonic()
    slots = writer.slots  # bounds the requests in flight (and the chunks they hold), across windows

    async def put(offset: int, parts: list[memoryview]) -> None:
        nonlocal sent
        try:
            await writer.write(offset, parts)
            sent += sum(len(p) for p in parts)
        finally:
            slots.release()

    waited = 0.0  # for imageio: logged at the end with the wait for the store
    try:
        # PUTs stream on across windows, no barrier.
        async with asyncio.TaskGroup() as group:
            async for plan, chunks in windows:
                for run in put_runs(plan):
                    body = _request_parts(disk, run, chunks)
                    t0 = time.monotonic()
                    await slots.acquire()
                    waited += time.monotonic() - t0
                    group.create_task(put(run[0].offset, body))
                del plan, chunks
                if sent > reported and time.monotonic() - reported_at >= PROGRESS_EVERY:
                    await progress(sent - reported)
                    reported, reported_at = sent, time.monotonic()
    except BaseExceptionGroup as failed:
        raise first_failure(failed) from None
    await progress(sent - reported)
    await writer.flush()
    log.info("disk %s: %d data bytes sent; waited %.1fs for chunks from the store, %.1fs for imageio; "
             "store reads so far: %d GETs, %d bytes", disk.name, sent, windows.waited, waited, windows.fetcher.gets,
             windows.fetcher.fetched)
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
