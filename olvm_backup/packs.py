"""Pack objects: many compressed chunks in one S3 object, streamed up with multipart upload.

A pack becomes visible when its multipart upload completes; its index object
(what it holds, where) is written right after, and only then is the pack
announced on the `packs` topic. Memory stays bounded by one part buffer.
"""
from __future__ import annotations

import asyncio
import secrets
import time

from .chunkindex import encode_index, index_key
from .objectstore import MultipartWriter, ObjectStore

MIB = 1024 * 1024


def new_pack_key() -> tuple[str, str]:
    pack_id = f"{int(time.time()):x}-{secrets.token_hex(12)}"
    return pack_id, f"packs/{pack_id[-2:]}/{pack_id}"


class PackBuilder:
    def __init__(self, store: ObjectStore, *, part_size: int = 8 * MIB, max_size: int = 64 * MIB) -> None:
        self._store = store
        self._part_size = part_size
        self.max_size = max_size
        self._upload: MultipartWriter | None = None
        self.pack_id = self.pack_key = ""
        self.entries: list[tuple[str, int, int, int, str]] = []
        self._digests: set[str] = set()
        self.size = 0
        self.opened_at = 0.0

    @property
    def empty(self) -> bool:
        return not self.entries

    @property
    def full(self) -> bool:
        return self.size >= self.max_size

    async def add(self, digest: str, codec: str, raw_size: int, data: bytes) -> None:
        if digest in self._digests:
            return  # the same chunk twice in one pack (a redone task): keep one copy
        if self._upload is None:
            self.pack_id, self.pack_key = new_pack_key()
            self._upload = await self._store.multipart(self.pack_key, part_size=self._part_size)
            self.opened_at = time.monotonic()
        await self._upload.write(data)
        self.entries.append((digest, self.size, len(data), raw_size, codec))
        self._digests.add(digest)
        self.size += len(data)

    async def seal(self) -> tuple[str, list[tuple[str, int, int, int, str]]]:
        """Complete the upload, write the index: after this the chunks are durable."""
        assert self._upload is not None, "seal of an empty pack"
        await self._upload.complete()
        await self._store.put(index_key(self.pack_id), encode_index(self.entries, self.pack_key))
        sealed = (self.pack_key, self.entries)
        self._reset()
        return sealed

    async def abort(self) -> None:
        upload, self._upload = self._upload, None
        if upload is not None:
            await asyncio.shield(upload.abort())
        self._reset()

    def _reset(self) -> None:
        self._upload = None
        self.entries = []
        self._digests = set()
        self.size = 0
