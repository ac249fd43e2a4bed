"""An encrypted repository's object store: its catalog objects sealed on the way out and opened on the way in.

Manifests, OVFs and pack indexes are whole objects, sealed by their key in the bucket (crypto/sealing.py), so the
code that reads and writes them (catalog.py, chunkindex.py, packs.py) is the same for a plain repository and an
encrypted one. Packs are not sealed as objects: each chunk in them is sealed on its own (format/chunks.py
ChunkCodec), so restores keep reading ranges of them. Journals (`jobs/`) say only which engine resources a running
backup holds, and request markers (`requests/`) only which backup a request ran as; the repository's config and
key slots are read before any key is known.
"""
from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator

from ..crypto.sealing import Sealer
from ..config import Settings
from ..objectstore import ObjectStore, open_store

SEALED_PREFIXES = ("backups/", "index/", "policies/", "audit/")  # audit/: the trail names VMs and users


def is_sealed_key(key: str) -> bool:
    return key.startswith(SEALED_PREFIXES)


class SealedStore:
    """An ObjectStore whose catalog objects go through `sealer`; everything else is the inner store's."""

    def __init__(self, inner: ObjectStore, sealer: Sealer) -> None:
        self.inner = inner
        self.sealer = sealer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def put(self, key: str, data: bytes, **kwargs: Any) -> None:
        if is_sealed_key(key):
            data = self.sealer.seal(key, data)
        await self.inner.put(key, data, **kwargs)

    async def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        if not is_sealed_key(key):
            return await self.inner.get(key, offset, length)
        if offset or length is not None:
            raise ValueError(f"{key} is a sealed object: it is read whole")
        return self.sealer.open(key, await self.inner.get(key))

    async def multipart(self, key: str, *args: Any, **kwargs: Any):
        if is_sealed_key(key):
            raise ValueError(f"{key} is a sealed object: it is written whole")
        return await self.inner.multipart(key, *args, **kwargs)


def sealed(store: ObjectStore, sealer: Sealer) -> ObjectStore:
    """`store` as the repository's code uses it. A plain repository's is wrapped too: a sealed object there is
    refused by name (no key configured) rather than read as garbage."""
    return SealedStore(store, sealer)  # type: ignore[return-value]


@contextlib.asynccontextmanager
async def open_sealed(settings: Settings, *, ensure_bucket: bool = True) -> AsyncIterator[tuple[ObjectStore, Sealer]]:
    """The repository's store, opened with its key (keyring.py: refused with a reason when the key is wrong or
    missing, or the repository is not initialised), and its sealer."""
    from .keyring import open_repository

    async with open_store(settings.s3, ensure_bucket=ensure_bucket) as store:
        sealer = await open_repository(store, settings.repository)
        yield sealed(store, sealer), sealer
