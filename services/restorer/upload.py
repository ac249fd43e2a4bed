"""Writing one disk of a restore point through an imageio upload: only data, zeros left sparse, chunks verified."""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

from olvm_backup.chunkfetch import ChunkFetcher
from olvm_backup.errors import BackupError
from olvm_backup.format.diskmap import Segment
from olvm_backup.format.manifest import DiskRecord, Manifest
from olvm_backup.imageio import ImageioClient

MIB = 1024 * 1024
WINDOW = 64 * MIB      # disk bytes planned and fetched per round
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
                      progress: Callable[[int], Awaitable[None]]) -> int:
    """`progress(n)` after each window with the data bytes it sent. Returns the data bytes sent. Fails loudly, naming disk and offset, on a missing or corrupt chunk."""

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

    sent = 0
    starts = list(range(0, disk.size, WINDOW))
    next_round = asyncio.ensure_future(fetch(starts[0])) if starts else None
    try:
        for i, start in enumerate(starts):
            plan, chunks = await next_round
            # Fetch the next window from the store while this one goes to imageio.
            next_round = asyncio.ensure_future(fetch(starts[i + 1])) if i + 1 < len(starts) else None
            window_sent = 0
            for run in put_runs(plan):
                parts = []
                for seg in run:
                    chunk = chunks[seg.digest]
                    if isinstance(chunk, BaseException):
                        raise RestoreDataError(str(chunk), disk=disk.name, offset=seg.offset)
                    parts.append(chunk[seg.skip:seg.skip + seg.length])
                data = b"".join(parts)
                await client.write(run[0].offset, data)
                window_sent += len(data)
            sent += window_sent
            await progress(window_sent)
        await client.flush()
    finally:
        if next_round is not None and not next_round.done():
            next_round.cancel()
            await asyncio.gather(next_round, return_exceptions=True)
    return sent
