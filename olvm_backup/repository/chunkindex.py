"""Which chunks the store holds, and where: loaded from the pack indexes, followed through `packs` records."""
from __future__ import annotations

import logging

import msgpack

from schemas import PackStored

from ..format.manifest import Location
from ..objectstore import ObjectStore

log = logging.getLogger(__name__)

INDEX_PREFIX = "index/"


def index_key(pack_id: str) -> str:
    return INDEX_PREFIX + pack_id


def encode_index(entries: list[tuple[str, int, int, int, str]], pack_key: str) -> bytes:
    return msgpack.packb({"v": 1, "pack": pack_key, "entries": entries}, use_bin_type=True)


class ChunkIndex:
    def __init__(self) -> None:
        self._where: dict[str, Location] = {}
        self._packs: set[str] = set()  # ids of the packs whose chunks are in

    def __contains__(self, digest: str) -> bool:
        return digest in self._where

    def __len__(self) -> int:
        return len(self._where)

    def get(self, digest: str) -> Location | None:
        return self._where.get(digest)

    def add_pack(self, pack_key: str, entries) -> None:
        self._packs.add(pack_key.rsplit("/", 1)[-1])
        for digest, offset, length, raw_size, codec in entries:
            # First location wins: a chunk stored twice by a redone task is harmless either way.
            self._where.setdefault(digest, Location(pack_key, offset, length, raw_size, codec))

    def add_record(self, record: PackStored) -> None:
        self.add_pack(record.pack_key, record.entries)

    async def load(self, store: ObjectStore) -> "ChunkIndex":
        count = await self.refresh(store)
        log.info("chunk index: %d chunks in %d packs", len(self._where), count)
        return self

    async def refresh(self, store: ObjectStore) -> int:
        """Read the index objects of the packs not known yet (every pack, the first time); returns how many. For
        when a pack record may have been missed: the store is what is durable, the records only announce it."""
        count = 0
        async for info in store.list(INDEX_PREFIX):
            if info.key[len(INDEX_PREFIX):] in self._packs:
                continue
            doc = msgpack.unpackb(await store.get(info.key), raw=False)
            self.add_pack(doc["pack"], doc["entries"])
            count += 1
        return count
