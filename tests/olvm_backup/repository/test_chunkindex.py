"""The chunk index from the store's pack index objects (moto's S3 over HTTP): a refresh reads only the packs it does
not know, such as one whose record never came. Index objects carry their format version, checked on read."""
from __future__ import annotations

import re

import msgpack
import pytest

from olvm_backup.objectstore import open_store
from olvm_backup.objectstore.memory import MemoryStore
from olvm_backup.repository.chunkindex import (
    INDEX_MAJOR, INDEX_MINOR, ChunkIndex, PackIndexError, decode_index, encode_index,
)
from olvm_backup.repository.packs import PackBuilder


async def _pack(store, *digests: str):
    packs = PackBuilder(store)
    for d in digests:
        await packs.add(d, "none", 4, b"data")
    return await packs.seal()


async def test_refresh_reads_the_packs_it_does_not_know(s3_settings):
    async with open_store(s3_settings) as store:
        await _pack(store, "a" * 64)
        index = await ChunkIndex().load(store)
        assert "a" * 64 in index

        announced_key, announced = await _pack(store, "b" * 64)
        await _pack(store, "c" * 64)  # its record never came
        index.add_pack(announced_key, announced)
        assert "c" * 64 not in index

        assert await index.refresh(store) == 1, "only the pack it did not know is read"
        assert "c" * 64 in index and len(index) == 3
        assert await index.refresh(store) == 0


def test_an_index_is_written_with_its_version_and_read_back():
    raw = encode_index([("a" * 64, 0, 10, 20, "zstd")], "packs/aa/p1")
    assert msgpack.unpackb(raw, raw=False)["v"] == [INDEX_MAJOR, INDEX_MINOR]
    assert decode_index(raw, "index/p1") == ("packs/aa/p1", [("a" * 64, 0, 10, 20, "zstd")])


@pytest.mark.parametrize("version", [1, [1, 0], [1, 7]])  # the bare major of earlier builds, this one, a newer minor
def test_an_index_of_this_major_is_read(version):
    raw = msgpack.packb({"v": version, "pack": "packs/aa/p1", "entries": [["b" * 64, 0, 1, 1, "none"]],
                         "added_later": True})
    assert decode_index(raw, "index/p1") == ("packs/aa/p1", [("b" * 64, 0, 1, 1, "none")])


@pytest.mark.parametrize("doc, reason", [
    ({"v": [2, 0], "pack": "packs/aa/p1", "entries": []}, "format [2, 0] is not readable by this build (major 1)"),
    ({"pack": "packs/aa/p1", "entries": []}, "format None is not readable"),
    ({"v": [1, 0], "entries": []}, "malformed"),
    ({"v": [1, 0], "pack": "packs/aa/p1", "entries": [["b" * 64, 0]]}, "malformed"),
])
def test_an_index_this_build_cannot_read_is_refused_by_name(doc, reason):
    with pytest.raises(PackIndexError, match=re.escape(f"pack index index/p1: {reason}")) as err:
        decode_index(msgpack.packb(doc), "index/p1")
    assert not err.value.retriable


async def test_loading_refuses_an_index_of_another_major():
    store = MemoryStore()
    await store.put("index/p1", encode_index([("a" * 64, 0, 1, 1, "none")], "packs/aa/p1"))
    await store.put("index/p2", msgpack.packb({"v": [2, 0], "pack": "packs/aa/p2", "entries": []}))
    with pytest.raises(PackIndexError, match="index/p2: format"):
        await ChunkIndex().load(store)
