"""What the product needs from object storage, and nothing more."""
from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator, Protocol

MIN_PART_SIZE = 5 * 1024 * 1024  # S3's floor for every part but the last


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


class MultipartWriter(Protocol):
    """Bytes in, parts out; `complete` makes the object visible, `abort` drops every part."""

    key: str
    size: int

    async def write(self, data: bytes) -> None: ...
    async def complete(self) -> None: ...
    async def abort(self) -> None: ...


class ObjectStore(Protocol):
    bucket: str

    async def put(self, key: str, data: bytes) -> None: ...
    async def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes: ...
    async def head(self, key: str) -> int | None: ...
    def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]: ...
    async def delete(self, key: str) -> None: ...
    async def multipart(self, key: str, part_size: int = MIN_PART_SIZE) -> MultipartWriter: ...
    async def ping(self) -> None: ...
