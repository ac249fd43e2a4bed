"""An object store in a dict, with S3's semantics where the product relies on them: for fast tests of the writer,
the chunk index and restores, held to the same conformance suite as the S3 store (tests/olvm_backup/objectstore).

What it keeps from S3: an object appears whole when its put or multipart upload completes, never before; parts
are numbered 1..N and all but the last are at least MIN_PART_SIZE; an upload that lost a part can only be
aborted; a ranged get of bytes the object does not have is an error; listing is in key order, a page at a time,
so objects written or deleted meanwhile do not upset it; deleting a missing key is not an error; an unfinished
upload is listed until completed or aborted, by anyone (a part or completion after that is NoSuchUpload).
With `settings` whose OLVM_OBJECT_LOCK_DAYS is on, Object Lock as the S3 store applies it (locking.py): a restore
point's objects get a retention, head() tells it, delete() refuses while it holds. Without versions: an
overwrite replaces the object here, where S3 keeps the locked version beneath the new one.

`before` is a fault hook: awaited ahead of every request (operation name, key, part number for parts), it may
raise the store's answer or wait, as a slow or failing store would.
"""
from __future__ import annotations

import asyncio
import collections
import time
import uuid
from datetime import datetime
from typing import AsyncIterator, Awaitable, Callable

from ..config import S3Settings
from ..errors import ObjectLocked, ObjectNotFound, StoreError, StoreRefused
from .base import MIN_PART_SIZE, ObjectInfo, PartCutter, Upload
from .locking import Retention, retention_for, utcnow

Hook = Callable[[str, str, int | None], Awaitable[None]]


class _MemoryMultipart(PartCutter):
    """Cut into parts as the S3 writer cuts them, so a fault hook sees the same part numbers."""

    def __init__(self, store: "MemoryStore", key: str, part_size: int) -> None:
        super().__init__(key, part_size)
        self._store = store
        self._parts: dict[int, bytes] = {}
        self._upload: Upload | None = None  # the upload on the store's side (after the first part)

    def _still_there(self) -> None:
        if self._upload is not None and self._upload.upload_id not in self._store._uploads:
            raise ObjectNotFound(self.key)  # aborted by someone else: S3's NoSuchUpload

    def _begun(self) -> bool:
        return self._upload is not None

    async def _put_whole(self, data: bytes) -> None:
        await self._store.put(self.key, data)

    async def _start_part(self, data: bytes) -> None:
        if self._upload is None:
            await self._store._request("create_multipart_upload", self.key)
            self._upload = Upload(self.key, uuid.uuid4().hex, time.time())
            self._store._uploads[self._upload.upload_id] = self._upload
        self._still_there()
        self._numbers += 1
        try:
            await self._store._request("upload_part", self.key, self._numbers)
        except BaseException as e:
            self._broken = e
            raise
        self._parts[self._numbers] = data

    async def complete(self) -> None:
        if await self._last_part():
            return
        self._check_parts(list(self._parts))
        numbers = sorted(self._parts)
        await self._store._request("complete_multipart_upload", self.key)
        self._still_there()
        self._store._keep(self.key, b"".join(self._parts[n] for n in numbers))
        self._end_upload()

    async def abort(self) -> None:
        self._buffer.clear()
        self._parts.clear()
        self._end_upload()

    def _end_upload(self) -> None:
        if self._upload is not None:
            self._store._uploads.pop(self._upload.upload_id, None)
            self._upload = None


class MemoryStore:
    PAGE = 1000  # keys per listing page, as S3's list_objects_v2

    def __init__(self, bucket: str = "memory", *, before: Hook | None = None, settings: S3Settings | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.bucket = bucket
        self.before = before
        self._settings = settings or S3Settings()
        self.clock = clock
        self._objects: dict[str, bytes] = {}
        self._locks: dict[str, Retention] = {}
        self._uploads: dict[str, Upload] = {}  # by id: multipart uploads begun, neither completed nor aborted
        self.requests: collections.Counter[str] = collections.Counter()  # per operation: what a test may count

    def pending_uploads(self) -> list[str]:
        """Keys with a multipart upload neither completed nor aborted: what S3 would keep (and bill) as parts."""
        return sorted(u.key for u in self._uploads.values())

    async def _request(self, op: str, key: str, part: int | None = None) -> None:
        self.requests[op] += 1
        if self.before is not None:
            await self.before(op, key, part)
        await asyncio.sleep(0)  # a request lets other tasks run, as a network round trip would

    async def ping(self) -> None:
        await self._request("head_bucket", self.bucket)

    async def put(self, key: str, data: bytes) -> None:
        await self._request("put_object", key)
        self._keep(key, bytes(data))

    def _keep(self, key: str, data: bytes) -> None:
        self._objects[key] = data
        lock = retention_for(key, self._settings, self.clock())
        if lock is None:
            self._locks.pop(key, None)
        else:
            self._locks[key] = lock

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

    async def head(self, key: str) -> ObjectInfo | None:
        await self._request("head_object", key)
        data = self._objects.get(key)
        return None if data is None else ObjectInfo(key, len(data), self._locks.get(key))

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
        lock = self._locks.get(key)
        if lock is not None and lock.holds(self.clock()):
            raise ObjectLocked(key, lock.describe(self.clock()))
        await self._request("delete_object", key)
        self._objects.pop(key, None)
        self._locks.pop(key, None)

    async def erase(self, key: str) -> None:
        await self.delete(key)  # the twin keeps no versions: deleting is erasing

    async def multipart(self, key: str, part_size: int = MIN_PART_SIZE) -> _MemoryMultipart:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part size {part_size} is below S3's minimum {MIN_PART_SIZE}")
        return _MemoryMultipart(self, key, part_size)

    async def uploads(self, prefix: str = "") -> AsyncIterator[Upload]:
        await self._request("list_multipart_uploads", prefix)
        for upload in sorted(self._uploads.values(), key=lambda u: (u.key, u.initiated)):
            if upload.key.startswith(prefix):
                yield upload

    async def abort_upload(self, upload: Upload) -> None:
        await self._request("abort_multipart_upload", upload.key)
        self._uploads.pop(upload.upload_id, None)
