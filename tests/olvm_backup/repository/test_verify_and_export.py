"""Verify and export straight from the store (moto): corruption is found and named, never passed on."""
from __future__ import annotations

import os

import pytest

from olvm_backup.repository import catalog
from olvm_backup.repository.chunkindex import ChunkIndex
from olvm_backup.repository.export import ExportError, export_disk
from olvm_backup.format.chunks import compress, digest
from olvm_backup.format.diskmap import DiskMap, Segment
from olvm_backup.format.manifest import DiskRecord, Manifest
from olvm_backup.objectstore import open_store
from olvm_backup.repository.packs import PackBuilder
from olvm_backup.repository.verify import verify

CHUNK = 64 * 1024


async def _store_backup(store, raws: list[bytes], size: int) -> Manifest:
    packs = PackBuilder(store, part_size=5 * 1024 * 1024)
    segments = []
    for i, raw in enumerate(raws):
        d = digest(raw)
        codec, stored = compress(raw)
        await packs.add(d, codec, len(raw), stored)
        segments.append(Segment(i * 2 * CHUNK, len(raw), d))  # every other chunk-sized range holds data
    pack_key, entries = await packs.seal()
    index = ChunkIndex()
    index.add_pack(pack_key, entries)
    disk = DiskRecord("d1", "root", size, "cow", "virtio_scsi", True, True, True, "sd", "full", "",
                      DiskMap(size, segments))
    ovf_key = await catalog.write_ovf(store, "vm1", "b1", "<ovf/>")
    m = Manifest("b1", "vm1", "web", "full", 1.0, 2.0, "cp1", None, None, ovf_key, "r", "test", [disk],
                 {d: index.get(d) for d in disk.map.digests()})
    await catalog.commit(store, m)
    return m


async def test_export_equals_the_data_and_verify_passes(s3_settings, tmp_path):
    raws = [os.urandom(CHUNK), b"text " * (CHUNK // 5) + b"x" * (CHUNK % 5), os.urandom(CHUNK)]
    size = 8 * CHUNK
    async with open_store(s3_settings) as store:
        m = await _store_backup(store, raws, size)
        assert [x.backup_id for x in await catalog.list_manifests(store)] == ["b1"]
        report = await verify(store, await catalog.find(store, "b1"))
        assert report.ok and report.chunks_checked == 3
        out = tmp_path / "root.raw"
        await export_disk(store, m, m.disks[0], out)
    expected = bytearray(size)
    for i, raw in enumerate(raws):
        expected[i * 2 * CHUNK:i * 2 * CHUNK + len(raw)] = raw
    assert out.read_bytes() == bytes(expected)


async def test_one_corrupt_byte_is_reported_with_disk_and_offset_and_blocks_export(s3_settings, tmp_path):
    raws = [os.urandom(CHUNK) for _ in range(4)]
    async with open_store(s3_settings) as store:
        m = await _store_backup(store, raws, 8 * CHUNK)
        victim = m.disks[0].map.segments[2]
        where = m.chunks[victim.digest]
        pack = bytearray(await store.get(where.pack_key))
        pack[where.offset + 10] ^= 0xFF
        await store.put(where.pack_key, bytes(pack))

        report = await verify(store, m)
        assert not report.ok
        assert [(d.disk, d.offset, d.digest, d.pack) for d in report.damage] == [
            ("root", victim.offset, victim.digest, where.pack_key)]  # the object to look at, or to restore from a copy
        with pytest.raises(ExportError, match=f"disk root at offset {victim.offset}"):
            await export_disk(store, m, m.disks[0], tmp_path / "root.raw")
        assert not (tmp_path / "root.raw").exists()
