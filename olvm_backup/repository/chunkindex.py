"""Which chunks the store holds, and where: loaded from the pack indexes, followed through `packs` records."""
from __future__ import annotations

import logging

import msgpack

from schemas import PackStored

from ..errors import BackupError
from ..format.manifest import Location
from ..objectstore import ObjectStore

log = logging.getLogger(__name__)

INDEX_PREFIX = "index/"
# The pack index object's format (schemas/FORMAT.md). A reader refuses another major and reads a newer minor
# (which may only add keys). Earlier builds wrote the bare major, `"v": 1`, of this same layout: read as 1.0.
INDEX_MAJOR = 1
INDEX_MINOR = 0

Entry = tuple[str, int, int, int, str]  # digest, offset in pack, stored length, raw size, codec


class PackIndexError(BackupError):
    template = "pack index {key}: {reason}"


def index_key(pack_id: str) -> str:
    return INDEX_PREFIX + pack_id


def encode_index(entries: list[Entry], pack_key: str) -> bytes:
    return msgpack.packb({"v": [INDEX_MAJOR, INDEX_MINOR], "pack": pack_key, "entries": entries},
                         use_bin_type=True)


def decode_index(raw: bytes, key: str) -> tuple[str, list[Entry]]:
    """The pack key and entries of the index object at `key`, or PackIndexError saying why not."""
    try:
        doc = msgpack.unpackb(raw, raw=False)
    except (msgpack.UnpackException, ValueError, TypeError) as e:
        raise PackIndexError(f"unreadable ({e})", key=key) from None
    version = doc.get("v") if isinstance(doc, dict) else None
    major = version if isinstance(version, int) else (version[0] if isinstance(version, list) and version else None)
    if major != INDEX_MAJOR:
        raise PackIndexError(f"format {version!r} is not readable by this build (major {INDEX_MAJOR})", key=key)
    try:
        pack_key, entries = doc["pack"], [tuple(e) for e in doc["entries"]]
        if not isinstance(pack_key, str) or any(len(e) != 5 for e in entries):
            raise ValueError("expected a pack key and 5-field entries")
    except (KeyError, TypeError, ValueError) as e:
        raise PackIndexError(f"malformed ({e})", key=key) from None
    return pack_key, entries


class ChunkIndex:
    def __init__(self) -> None:
        self._where: dict[str, Location] = {}
        # Other copies of a chunk (a redone task, a chunk stored again because the pack holding it was condemned):
        # rare, and what takes over when the first copy's pack is condemned.
        self._copies: dict[str, list[Location]] = {}
        self._packs: set[str] = set()  # ids of the packs whose chunks are in
        self._dropped: set[str] = set()  # keys of the packs garbage collection condemns (gc.py), kept out

    def __contains__(self, digest: str) -> bool:
        return digest in self._where

    def __len__(self) -> int:
        return len(self._where)

    def get(self, digest: str) -> Location | None:
        return self._where.get(digest)

    def add_pack(self, pack_key: str, entries) -> None:
        if pack_key in self._dropped:
            return
        self._packs.add(pack_key.rsplit("/", 1)[-1])
        for digest, offset, length, raw_size, codec in entries:
            where = Location(pack_key, offset, length, raw_size, codec)
            if digest not in self._where:
                self._where[digest] = where  # the first copy is the one backups name
            elif self._where[digest] != where:
                self._copies.setdefault(digest, []).append(where)

    def exclude(self, condemned: set[str]) -> tuple[int, int]:
        """Keep the chunks of the packs garbage collection condemns out, exactly those (gc.py): a backup stores them
        anew rather than name a pack about to go. A pack no longer condemned (a collection spared it: a backup
        committed naming it) comes back with the next `refresh`. A chunk with a copy in another pack stays, at that
        copy. Returns (chunks put out, packs let back in)."""
        back = self._dropped - condemned
        new = condemned - self._dropped
        self._dropped = set(condemned)
        for pack_key in back:  # forgotten as read: `refresh` reads its index object again
            self._packs.discard(pack_key.rsplit("/", 1)[-1])
        gone = 0
        for digest in [d for d, loc in self._where.items() if loc.pack_key in new] if new else []:
            copies = [c for c in self._copies.pop(digest, []) if c.pack_key not in self._dropped]
            if copies:  # another copy of it lives on: backups name that one now
                self._where[digest] = copies.pop(0)
                if copies:
                    self._copies[digest] = copies
            else:
                del self._where[digest]
                gone += 1
        return gone, len(back)

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
            self.add_pack(*decode_index(await store.get(info.key), info.key))
            count += 1
        return count
