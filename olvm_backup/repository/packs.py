"""Pack objects: many compressed chunks in one S3 object, streamed up with multipart upload.

A pack becomes visible when its multipart upload completes; its index object
(what it holds, where) is written right after, and only then is the pack
announced on the `packs` topic. Memory stays bounded by the part buffers of two
packs: the one filling and the one being sealed.
"""
from __future__ import annotations

import asyncio
import secrets
import time

from .chunkindex import encode_index, index_key
from ..objectstore import MultipartWriter, ObjectStore

MIB = 1024 * 1024


def new_pack_key() -> tuple[str, str]:
    pack_id = f"{int(time.time()):x}-{secrets.token_hex(12)}"
    return pack_id, f"packs/{pack_id[-2:]}/{pack_id}"


class OpenPack:
    """One pack being written: its multipart upload and what it holds so far."""

    def __init__(self, store: ObjectStore, upload: MultipartWriter, pack_id: str, pack_key: str) -> None:
        self._store = store
        self._upload = upload
        self.pack_id, self.pack_key = pack_id, pack_key
        self.entries: list[tuple[str, int, int, int, str]] = []
        self._digests: set[str] = set()
        self.size = 0
        self.opened_at = time.monotonic()

    async def add(self, digest: str, codec: str, raw_size: int, data: bytes) -> bool:
        """Whether the chunk was added (False: the pack holds it already)."""
        if digest in self._digests:
            return False  # the same chunk twice in one pack (a redone task): keep one copy
        await self._upload.write(data)
        self.entries.append((digest, self.size, len(data), raw_size, codec))
        self._digests.add(digest)
        self.size += len(data)
        return True

    async def seal(self) -> tuple[str, list[tuple[str, int, int, int, str]]]:
        """Complete the upload, write the index: after this the chunks are durable."""
        await self._upload.complete()
        await self._store.put(index_key(self.pack_id), encode_index(self.entries, self.pack_key))
        return self.pack_key, self.entries

    async def abort(self) -> None:
        await asyncio.shield(self._upload.abort())


class PackBuilder:
    """Fills one pack at a time; `detach` hands the full one over (to be sealed while the next one fills)."""

    def __init__(self, store: ObjectStore, *, part_size: int = 8 * MIB, max_size: int = 64 * MIB) -> None:
        self._store = store
        self._part_size = part_size
        self.max_size = max_size
        self._open: OpenPack | None = None

    @property
    def empty(self) -> bool:
        return self._open is None or not self._open.entries

    @property
    def full(self) -> bool:
        return self._open is not None and self._open.size >= self.max_size

    @property
    def opened_at(self) -> float:
        return self._open.opened_at if self._open is not None else time.monotonic()

    async def add(self, digest: str, codec: str, raw_size: int, data: bytes) -> bool:
        """Whether the chunk was added (False: the open pack holds it already)."""
        if self._open is None:
            pack_id, pack_key = new_pack_key()
            upload = await self._store.multipart(pack_key, part_size=self._part_size)
            self._open = OpenPack(self._store, upload, pack_id, pack_key)
        return await self._open.add(digest, codec, raw_size, data)

    def detach(self) -> OpenPack:
        """The open pack, no longer this builder's: the next chunk starts a new one."""
        assert self._open is not None, "detach with no open pack"
        pack, self._open = self._open, None
        return pack

    async def seal(self) -> tuple[str, list[tuple[str, int, int, int, str]]]:
        """Seal the open pack right here (for callers that need no overlap)."""
        return await self.detach().seal()

    async def abort(self) -> None:
        pack, self._open = self._open, None
        if pack is not None:
            await pack.abort()
