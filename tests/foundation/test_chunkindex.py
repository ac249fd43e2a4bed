"""The chunk index from the store's pack index objects (moto's S3 over HTTP): a refresh reads only the packs it does
not know, such as one whose record never came."""
from __future__ import annotations

from olvm_backup.repository.chunkindex import ChunkIndex
from olvm_backup.objectstore import open_store
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
