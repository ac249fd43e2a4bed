"""One disk of one restore point as a synchronous, thread-safe random-access image.

File system parsers (dissect), FUSE and nbdkit call from threads and expect a file: `pread`, `extents` and a
seekable `stream()`. Chunks come through ChunkFetcher (verified, coalesced ranged GETs) on an asyncio loop the
image is given or owns (loopthread.py); decoded chunks are kept in a byte-bounded LRU cache, and a reader going
forward has the next window fetched before it asks (read-ahead). A chunk that is corrupt or missing fails the read
with the restore point, the disk and the disk offset named: never wrong bytes.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import threading
from typing import Iterator

from ..actors import actor
from ..config import Settings
from ..crypto.sealing import Sealer
from ..errors import BackupError
from ..format.chunks import ChunkCodec
from ..format.manifest import DiskRecord, Manifest
from ..objectstore import ObjectStore
from ..repository.chunkfetch import ChunkFetcher
from .chunkcache import ChunkCache
from .loopthread import LoopThread
from .mapview import MapView

MIB = 1 << 20
WINDOW = 16 * MIB          # one pread fetches at most this much of the map at a time: bounds what it holds
SEQUENTIAL_SLACK = 1 * MIB  # a read starting this close to where the last one ended continues it (threads reorder)
SEQUENTIAL_AFTER = 2        # reads in a row that make a reader sequential


class ImageReadError(BackupError):
    template = "restore point {backup_id} disk {disk} at offset {offset}: {reason}"


Fetched = dict[str, "bytes | BackupError"]


class RestorePointImage:
    """`loop`: a running loop (in another thread) the store belongs to; None starts a private one for the image.
    Call pread/extents/stream from any thread but the loop's."""

    def __init__(self, store: ObjectStore, sealer: Sealer, manifest: Manifest, disk: DiskRecord, *,
                 loop: asyncio.AbstractEventLoop | None = None, cache_bytes: int = 32 * MIB,
                 readahead_bytes: int = 16 * MIB, parallel: int = 4) -> None:
        self.backup_id = manifest.backup_id
        self.name = disk.name
        self.size = disk.size
        self.manifest = manifest
        self.disk = disk
        self._locations = manifest.chunks
        self._map = MapView(disk.map)
        self._fetcher = ChunkFetcher(store, ChunkCodec.for_reading(manifest.chunk_hash, sealer), parallel)
        self._own_loop = LoopThread(f"image {self.backup_id}/{self.name}") if loop is None else None
        self._loop = loop if loop is not None else self._own_loop.loop
        self._cache = ChunkCache(cache_bytes)
        self._readahead = min(readahead_bytes, cache_bytes // 2)  # what is fetched ahead must still be there
        self._lock = threading.RLock()
        self._pending: dict[str, concurrent.futures.Future[Fetched]] = {}
        self._last_end: int | None = None
        self._streak = 0
        self._ahead_until = 0
        self._closed = False

    # --- reading ---------------------------------------------------------------------------------------------------

    def pread(self, length: int, offset: int) -> bytes:
        """`length` bytes at `offset` (fewer at the end of the disk; none past it). Holes read as zeros."""
        if length < 0 or offset < 0:
            raise ValueError(f"pread({length}, {offset}): negative length or offset")
        self._check_open()
        end = min(self.size, offset + length)
        if offset >= end:
            return b""
        self._noticed(offset, end)
        out = bytearray(end - offset)
        for start in range(offset, end, WINDOW):
            plan = self._map.plan(start, min(end, start + WINDOW))
            chunks = self._chunks({seg.digest for _, _, seg in plan if seg is not None})
            for pos, n, seg in plan:
                if seg is None:
                    continue  # a hole: zeros already
                data = chunks[seg.digest]
                if isinstance(data, BackupError):
                    raise ImageReadError(str(data), backup_id=self.backup_id, disk=self.name, offset=pos)
                out[pos - offset:pos - offset + n] = data[seg.skip:seg.skip + n]
        return bytes(out)

    def extents(self, offset: int, length: int) -> list[tuple[int, int, bool]]:
        """(start, length, is_data) covering [offset, offset+length) within the disk: ranges the map leaves unmapped
        are holes (they read as zeros)."""
        return self._map.extents(offset, length)

    def stream(self) -> "ImageStream":
        """A seekable, read-only file object over the image, with its own position."""
        return ImageStream(self)

    # --- chunks: cache, fetches in flight, read-ahead --------------------------------------------------------------

    def _chunks(self, digests: set[str]) -> Fetched:
        got: Fetched = {}
        waits: dict[str, concurrent.futures.Future[Fetched]] = {}
        with self._lock:
            missing = []
            for d in digests:
                data = self._cache.get(d)
                if data is not None:
                    got[d] = data
                elif d in self._pending:
                    waits[d] = self._pending[d]  # already asked for (by read-ahead or another thread)
                else:
                    missing.append(d)
            if missing:
                batch = self._submit(missing)
                waits.update((d, batch) for d in missing)
        for d, batch in waits.items():
            try:
                got[d] = batch.result()[d]
            except concurrent.futures.CancelledError:
                raise ImageReadError("the image was closed during the read", backup_id=self.backup_id,
                                     disk=self.name, offset=0) from None
        return got

    def _submit(self, digests: list[str]) -> concurrent.futures.Future[Fetched]:
        """Fetch `digests` in one batch (the fetcher coalesces them into GETs); the lock is held."""
        batch = asyncio.run_coroutine_threadsafe(self._fetch({d: self._locations[d] for d in digests}), self._loop)
        for d in digests:
            self._pending[d] = batch
        batch.add_done_callback(lambda f: self._landed(digests, f))
        return batch

    async def _fetch(self, wanted: dict) -> Fetched:
        try:
            fetched = await self._fetcher.fetch(wanted)
        except BackupError as e:
            return {d: e for d in wanted}
        # Uncompressed chunks come as views into their whole GET's buffer: copied, so the cache holds only them.
        return {d: v if isinstance(v, (bytes, BackupError)) else bytes(v) for d, v in fetched.items()}

    def _landed(self, digests: list[str], batch: concurrent.futures.Future[Fetched]) -> None:
        result = None if batch.cancelled() or batch.exception() is not None else batch.result()
        with self._lock:
            for d in digests:
                if self._pending.get(d) is batch:
                    del self._pending[d]
                if result is not None and isinstance(result.get(d), bytes):
                    self._cache.put(d, result[d])  # errors are not kept: the next read asks the store again

    def _noticed(self, offset: int, end: int) -> None:
        """Follow the reader: once it reads forward, keep the next read-ahead window asked for."""
        with self._lock:
            if self._last_end is not None and abs(offset - self._last_end) <= SEQUENTIAL_SLACK:
                self._streak += 1
            else:
                self._streak, self._ahead_until = 0, 0
            self._last_end = end
            if self._streak < SEQUENTIAL_AFTER or not self._readahead \
                    or self._ahead_until >= end + self._readahead // 2:
                return
            start = max(end, self._ahead_until)
            stop = min(self.size, end + self._readahead)
            self._ahead_until = stop
            if start >= stop:
                return
            wanted = {seg.digest for _, _, seg in self._map.plan(start, stop) if seg is not None}
            missing = [d for d in wanted if d not in self._pending and d not in self._cache]
            if missing:
                self._submit(missing)

    # --- life ------------------------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"the image of disk {self.name} of restore point {self.backup_id} is closed")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return
        if running is self._loop:
            raise RuntimeError("RestorePointImage is synchronous: call it from a worker thread, not its loop")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._lock:
            pending = set(self._pending.values())
        for batch in pending:
            batch.cancel()
        if self._own_loop is not None:
            self._own_loop.close()
        self._cache.clear()

    def __enter__(self) -> "RestorePointImage":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ImageStream(io.RawIOBase):
    """A read-only, seekable file over an image (dissect, tarfile...). Several may be open on one image."""

    def __init__(self, image: RestorePointImage) -> None:
        super().__init__()
        self._image = image
        self._pos = 0
        self.size = image.size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError(f"seek to {base + offset}: before the start of the image")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self._image.pread(len(view), self._pos)
        view[:len(data)] = data
        self._pos += len(data)
        return len(data)

    def readall(self) -> bytes:
        data = self._image.pread(max(0, self.size - self._pos), self._pos)
        self._pos += len(data)
        return data


@contextlib.contextmanager
def open_image(settings: Settings, backup_id: str, disk: str, *, use: str = "export",
               by: str | None = None) -> Iterator[RestorePointImage]:
    """The image of `disk` (name or id) of restore point `backup_id`, from the repository `settings` name, held in
    use (holds.py: prune keeps it) until the block ends; the store, the hold and the loop are closed after it."""
    with LoopThread(f"image {backup_id}/{disk}") as runner, opened_point(runner, settings, backup_id, use, by) as (
            store, sealer, manifest):
        image = RestorePointImage(store, sealer, manifest, manifest.disk(disk), loop=runner.loop,
                                  cache_bytes=settings.access.cache_mb * MIB,
                                  readahead_bytes=settings.access.readahead_mb * MIB)
        with image:
            yield image


@contextlib.contextmanager
def open_images(settings: Settings, backup_id: str, *, use: str = "export",
                by: str | None = None) -> Iterator[dict[str, RestorePointImage]]:
    """Every disk of restore point `backup_id` as an image (by disk name, in the manifest's order), on one loop and
    one store, held in use until the block ends."""
    with LoopThread(f"images {backup_id}") as runner, opened_point(runner, settings, backup_id, use, by) as (
            store, sealer, manifest), contextlib.ExitStack() as images:
        yield {d.name: images.enter_context(RestorePointImage(
            store, sealer, manifest, d, loop=runner.loop, cache_bytes=settings.access.cache_mb * MIB,
            readahead_bytes=settings.access.readahead_mb * MIB)) for d in manifest.disks}


@contextlib.contextmanager
def opened_point(runner: LoopThread, settings: Settings, backup_id: str, use: str = "export",
                 by: str | None = None) -> Iterator[tuple[ObjectStore, Sealer, Manifest]]:
    """The repository opened on `runner`'s loop, restore point `backup_id` found and held in use for the block:
    (store, sealer, manifest). One task on the loop owns the store and the hold from start to end, so they are
    entered and left in the same task."""
    from ..repository import catalog
    from ..repository.holds import holding
    from ..repository.sealedstore import open_sealed

    ready: concurrent.futures.Future = concurrent.futures.Future()
    done = asyncio.Event()

    async def own() -> None:
        try:
            async with open_sealed(settings, ensure_bucket=False) as (store, sealer), \
                    holding(store, backup_id, use, by or actor()):
                manifest = await catalog.find(store, backup_id)
                ready.set_result((store, sealer, manifest))
                await done.wait()
        except BaseException as e:
            if not ready.done():
                ready.set_exception(e)
            raise

    owner = runner.submit(own())
    try:
        opened = ready.result()
    except BaseException:  # it failed, or the wait was interrupted (Ctrl-C): let the owner end either way
        runner.loop.call_soon_threadsafe(done.set)
        with contextlib.suppress(BaseException):
            owner.result()
        raise
    try:
        yield opened
    finally:
        runner.loop.call_soon_threadsafe(done.set)
        with contextlib.suppress(BaseException):
            owner.result()
