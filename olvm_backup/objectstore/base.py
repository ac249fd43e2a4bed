"""What the product needs from object storage, and nothing more."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import AsyncIterator, Protocol, Self

from ..errors import StoreRefused
from .locking import Retention

MIN_PART_SIZE = 5 * 1024 * 1024  # S3's floor for every part but the last


@dataclass(frozen=True)
class ObjectInfo:
    """`lock`: the object's Object Lock retention as head() tells it (None: none, or a listing, which does not
    say)."""

    key: str
    size: int
    lock: Retention | None = None


@dataclass(frozen=True)
class Upload:
    """A multipart upload neither completed nor aborted: the store keeps its parts (and bills them) until one is."""

    key: str
    upload_id: str
    initiated: float  # seconds since the epoch


class MultipartWriter(Protocol):
    """Bytes in, parts out; `complete` makes the object visible, `abort` drops every part."""

    key: str
    size: int

    async def write(self, data: bytes) -> None: ...
    async def complete(self) -> None: ...
    async def abort(self) -> None: ...


class PartCutter:
    """What every multipart writer shares: writes buffered and cut into parts of `part_size`, each handed to
    `_start_part` as it fills, and a part failure latched (`_broken`) so that nothing completes an object with a
    part missing. `async with` completes on success and aborts on error."""

    def __init__(self, key: str, part_size: int) -> None:
        self.key = key
        self._part_size = part_size
        self._buffer = bytearray()
        self._numbers = 0  # parts started: the last part's number
        self._broken: BaseException | None = None
        self.size = 0

    async def _start_part(self, data: bytes) -> None:
        raise NotImplementedError

    def _begun(self) -> bool:
        """Whether the store holds a multipart upload for the object (created with the first part)."""
        raise NotImplementedError

    async def _put_whole(self, data: bytes) -> None:
        raise NotImplementedError

    async def complete(self) -> None:
        raise NotImplementedError

    async def _last_part(self) -> bool:
        """Where complete() starts: an object that never filled a part goes up in one PUT, as S3 clients do below
        their multipart threshold (True: nothing more to do); otherwise the buffer's rest starts as the last part."""
        self._check()
        if not self._begun():
            await self._put_whole(bytes(self._buffer))
            self._buffer.clear()
            return True
        if self._buffer:
            await self._start_part(bytes(self._buffer))
            self._buffer.clear()
        return False

    async def abort(self) -> None:
        raise NotImplementedError

    def _check(self) -> None:
        if self._broken is not None:
            raise StoreRefused(f"{self.key}: the upload lost a part ({self._broken}); it can only be aborted")

    def _check_parts(self, numbers: list[int]) -> None:
        """S3 would complete an object with a gap in its parts: the parts must be exactly 1..N."""
        if sorted(numbers) != list(range(1, self._numbers + 1)):
            raise StoreRefused(f"{self.key}: parts {sorted(numbers)} of {self._numbers} uploaded; not completing")

    async def write(self, data: bytes) -> None:
        self._check()
        self._buffer += data
        self.size += len(data)
        while len(self._buffer) >= self._part_size:
            part = bytes(self._buffer[: self._part_size])
            del self._buffer[: self._part_size]
            await self._start_part(part)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            await self.complete()
        else:
            await asyncio.shield(self.abort())


class ObjectStore(Protocol):
    bucket: str

    async def put(self, key: str, data: bytes) -> None: ...
    async def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes: ...
    async def head(self, key: str) -> ObjectInfo | None: ...
    def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]: ...
    async def delete(self, key: str) -> None: ...  # ObjectLocked while its retention holds
    async def erase(self, key: str) -> None: ...  # delete, and every older version too (a versioned bucket's)
    async def multipart(self, key: str, part_size: int = MIN_PART_SIZE) -> MultipartWriter: ...
    def uploads(self, prefix: str = "") -> AsyncIterator[Upload]: ...
    async def abort_upload(self, upload: Upload) -> None: ...
    async def ping(self) -> None: ...
