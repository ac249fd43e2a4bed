"""Reading chunks back from packs: ranged GETs coalesced per pack, every chunk verified against its digest.

Object stores charge per request (moto spends ~0.3 s of CPU on each), so
chunks that sit close together in one pack are fetched with one GET.
"""
from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Iterable

from ..errors import BackupError, ObjectNotFound
from ..format.chunks import ChunkCodec, CorruptChunk
from ..format.manifest import Location
from .chunkindex import ChunkIndex
from ..objectstore import ObjectStore

MIB = 1024 * 1024


class ChunkMissing(BackupError):
    template = "chunk {digest} is missing: {reason}"


def spans(locations: Iterable[tuple[str, Location]], max_span: int = 32 * MIB,
          max_gap: int = 1 * MIB) -> list[tuple[str, int, int, list[tuple[str, Location]]]]:
    """Group chunk locations into (pack, start, end, members) reads: close chunks of one pack share a GET."""
    by_pack: dict[str, list[tuple[str, Location]]] = defaultdict(list)
    for digest, loc in locations:
        by_pack[loc.pack_key].append((digest, loc))
    out = []
    for pack, members in by_pack.items():
        members.sort(key=lambda m: m[1].offset)
        current: list[tuple[str, Location]] = []
        start = end = 0
        for digest, loc in members:
            if current and (loc.offset - end > max_gap or loc.offset + loc.length - start > max_span):
                out.append((pack, start, end, current))
                current = []
            if not current:
                start = loc.offset
            current.append((digest, loc))
            end = max(end, loc.offset + loc.length)
        if current:
            out.append((pack, start, end, current))
    return out


def _unpack(blob: bytes, start: int, members, codec: ChunkCodec) -> dict[str, bytes | memoryview | BackupError]:
    """A span's chunks, opened, decompressed and verified in one go (in a worker thread: hashing, decryption and
    decompression release the GIL).
    Uncompressed chunks stay views into the span's buffer: no copy."""
    view = memoryview(blob)
    out: dict[str, bytes | memoryview | BackupError] = {}
    for digest, loc in members:
        stored = view[loc.offset - start: loc.offset - start + loc.length]
        try:
            out[digest] = codec.load(loc.codec, stored, loc.raw_size, digest)
        except CorruptChunk as e:
            out[digest] = e
    return out


class Relocator:
    """Where else a chunk is stored when the pack its manifest names is gone: garbage collection copied the live
    chunks of a mostly-dead pack into a new one (gc.py, repacking) and deleted it; the pack indexes say where they
    went. Loaded on first need: a restore that never meets a moved chunk never reads the indexes."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store
        self._index: ChunkIndex | None = None
        self._loading = asyncio.Lock()

    async def find(self, digest: str, gone: str) -> Location | None:
        async with self._loading:
            if self._index is None:
                self._index = await ChunkIndex().load(self._store)
        where = self._index.get(digest)
        return where if where is not None and where.pack_key != gone else None


class ChunkFetcher:
    """Chunks of one restore point: `codec` is how it names and stores them (ChunkCodec.for_reading)."""

    def __init__(self, store: ObjectStore, codec: ChunkCodec, parallel: int = 4) -> None:
        self._store = store
        self._codec = codec
        self._limit = asyncio.Semaphore(parallel)
        self._relocator = Relocator(store)
        self.gets = 0          # ranged GETs issued, and the bytes they asked for: what a restore costs the store
        self.fetched = 0

    async def fetch(self, wanted: dict[str, Location], *, relocate: bool = True
                    ) -> dict[str, bytes | memoryview | BackupError]:
        """Every wanted chunk, raw and verified, or the error that stops it being read. A chunk whose pack is gone
        is looked for where garbage collection may have moved it (Relocator), once."""
        results: dict[str, bytes | memoryview | BackupError] = {}
        moved: dict[str, Location] = {}

        async def one_span(pack: str, start: int, end: int, members) -> None:
            async with self._limit:
                self.gets += 1
                self.fetched += end - start
                try:
                    blob = await self._store.get(pack, start, end - start)
                except ObjectNotFound:
                    for digest, _ in members:
                        elsewhere = await self._relocator.find(digest, pack) if relocate else None
                        if elsewhere is not None:
                            moved[digest] = elsewhere
                        else:
                            results[digest] = ChunkMissing(f"its pack {pack} is not in the store", digest=digest)
                    return
                except BackupError as e:
                    for digest, _ in members:
                        results[digest] = ChunkMissing(f"pack {pack} could not be read: {e}", digest=digest)
                    return
            results.update(await asyncio.to_thread(_unpack, blob, start, members, self._codec))

        async with asyncio.TaskGroup() as group:
            for pack, start, end, members in spans(wanted.items()):
                group.create_task(one_span(pack, start, end, members))
        if moved:
            results.update(await self.fetch(moved, relocate=False))
        return results
