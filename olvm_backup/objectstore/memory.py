"""An object store in a dict, with S3's semantics where the product relies on them: for fast tests of the writer,
the chunk index and restores, held to the same conformance suite as the S3 store (tests/olvm_backup/objectstore).

What it keeps from S3: an object appears whole when its put or multipart upload completes, never before; parts
are numbered 1..N and all but the last are at least MIN_PART_SIZE; an upload that lost a part can only be
aborted; a ranged get of bytes the object does not have is an error; listing is in key order, a page at a time,
so objects written or deleted meanwhile do not upset it; deleting a missing key is not an error.

`before` is a fault hook: awaited ahead of every request (operation name, key, part number for parts), it may
raise the store's answer or wait, as a slow or failing store would.
"""
from __future__ import annotations

import asyncio
import collections
from typing import AsyncIterator, Awaitable, Callable

from ..errors import ObjectNotFound, StoreError, StoreRefused
from .base import MIN_PART_SIZE, ObjectInfo, PartCutter

Hook = Callable[[str, str, int | None], Awaitable[None]]


class _MemoryMultipart(PartCutter):
    """Cut into parts as the S3 writer cuts them, so a fault hook sees the same part numbers."""

    def __init__(self, store: "MemoryStore", key: str, part_size: int) -> None:
        super().__init__(key, part_size)
        self._store = store
        self._parts: dict[int, bytes] = {}
        self._started = False  # an upload exists on the store's side (after the first part)

    async def _start_part(self, data: bytes) -> None:
        if not self._started:
            await self._store._request("create_multipart_upload", self.key)
            self._started = True
            self._store._uploads[self.key] += 1
        self._numbers += 1
        try:
            await self._store._request("upload_part", self.key, self._numbers)
        except BaseException as e:
            self._broken = e
            raise
        self._parts[self._numbers] = data

    async def complete(self) -> None:
        self._check()
        if not self._started:
            await self._store.put(self.key, bytes(self._buffer))
            self._buffer.clear()
            return
        if self._buffer:
            await self._start_part(bytes(self._buffer))
            self._buffer.clear()
        self._check_parts(list(self._parts))
        numbers = sorted(self._parts)
        await self._store._request("complete_multipart_upload", self.key)
        self._store._objects[self.key] = b"".join(self._parts[n] for n in numbers)
        self._end_upload()

    async def abort(self) -> None:
        self._buffer.clear()
        self._parts.clear()
        self._end_upload()

    def _end_upload(self) -> None:
        if self._started:
            self._started = False
            self._store._uploads[self.key] -= 1
            if not self._store._uploads[self.key]:
                del self._store._uploads[self.key]


class MemoryStore:
    PAGE = 1000  # keys per listing page, as S3's list_objects_v2

    def __init__(self, bucket: str = "memory", *, before: Hook | None = None) -> None:
        self.bucket = bucket
        self.before = before
        self._objects: dict[str, bytes] = {}
        self._uploads: collections.Counter[str] = collections.Counter()  # multipart uploads begun, per key
        self.requests: collections.Counter[str] = collections.Counter()  # per operation: what a test may count

    def pending_uploads(self) -> list[str]:
        """Keys with a multipart upload neither completed nor aborted: what S3 would keep (and bill) as parts."""
        return sorted(self._uploads)

    async def _request(self, op: str, key: str, part: int | None = None) -> None:
        self.requests[op] += 1
        if self.before is not None:
            await self.before(op, key, part)
        await asyncio.sleep(0)  # a request lets other tasks run, as a network round trip would

    async def ping(self) -> None:
        await self._request("head_bucket", self.bucket)

    async def put(self, key: str, data: bytes) -> None:
        await self._request("put_object", key)
        self._objects[key] = bytes(data)

    async def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        await self._request("get_object", key)
        try:
            whole = self._objects[key]
        except KeyError:
            raise ObjectNotFound(key) from None
        if offset and offset >= len(whole):
            raise StoreRefused(f"{key}: refused: InvalidRange (HTTP 416)")
        data = whole[offset:] if length is None else whole[offset:offset + length]
        if length is not None and len(data) != length:
            raise StoreError(f"{key}: asked {length} bytes at {offset}, got {len(data)}")
        return data

    async def head(self, key: str) -> int | None:
        await self._request("head_object", key)
        data = self._objects.get(key)
        return None if data is None else len(data)

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        after = None
        while True:
            await self._request("list_objects_v2", prefix)
            # S3 orders keys by their UTF-8 bytes, answers a page as it stands and resumes after its last key.
            keys = sorted((k for k in self._objects if k.startswith(prefix)), key=str.encode)
            if after is not None:
                keys = [k for k in keys if k.encode() > after.encode()]
            page = [ObjectInfo(k, len(self._objects[k])) for k in keys[: self.PAGE]]
            for info in page:
                yield info
            if len(page) < self.PAGE:
                return
            after = page[-1].key

    async def delete(self, key: str) -> None:
        await self._request("delete_object", key)
        self._objects.pop(key, None)

    async def multipart(self, key: str, part_size: int = MIN_PART_SIZE) -> _MemoryMultipart:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part size {part_size} is below S3's minimum {MIN_PART_SIZE}")
        return _MemoryMultipart(self, key, part_size)
