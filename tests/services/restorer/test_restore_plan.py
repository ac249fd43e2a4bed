"""A restore's plan in-process: a restore point committed to the in-memory store, found again, walked window by
window with its chunks fetched from the packs and verified, and cut into the PUTs the upload sends. Laying those
PUTs onto an empty disk must give back the disk the map describes; zeros are never sent."""
from __future__ import annotations

import itertools
import os

import pytest

from olvm_backup.format.chunks import CHUNK_HASH, ChunkCodec, compress, digest
from olvm_backup.format.diskmap import DiskMap, Segment
from olvm_backup.format.manifest import DiskRecord, Location, Manifest
from olvm_backup.objectstore.memory import MemoryStore
from olvm_backup.repository import catalog
from olvm_backup.repository.chunkfetch import ChunkFetcher, ChunkMissing
from olvm_backup.repository.packs import PackBuilder
from services.restorer import upload
from services.restorer.upload import RestoreDataError, Windows, put_runs

KIB = 1024
C = 64 * KIB


@pytest.fixture(autouse=True)
def small_windows(monkeypatch):
    monkeypatch.setattr(upload, "WINDOW", 3 * C)  # several windows, and one fetched ahead while another is used


async def restore_point(store: MemoryStore, size: int, segments: list[Segment], chunks: dict[str, bytes]) -> Manifest:
    """Chunks into packs (two, so fetches span packs), the manifest committed: what a backup leaves."""
    locations: dict[str, Location] = {}
    packs = PackBuilder(store, max_size=2 * C)
    for d, raw in chunks.items():
        codec, stored = compress(raw)
        await packs.add(d, codec, len(raw), stored)
        if packs.full:
            key, entries = await packs.seal()
            locations |= {e[0]: Location(key, *e[1:]) for e in entries}
    if not packs.empty:
        key, entries = await packs.seal()
        locations |= {e[0]: Location(key, *e[1:]) for e in entries}
    disk = DiskRecord(disk_id="d1", name="disk1", size=size, format="raw", interface="virtio_scsi", bootable=True,
                      active=True, sparse=True, storage_domain="sd1", mode="full", reason="first backup",
                      map=DiskMap(size, segments))
    manifest = Manifest(backup_id="b1", vm_id="vm1", vm_name="vm", mode="full", created_at=1.0, completed_at=2.0,
                        to_checkpoint=None, from_checkpoint=None, parent_backup=None, request_id="r1",
                        requested_by="test", disks=[disk], chunks=locations,
                        ovf_key=await catalog.write_ovf(store, "vm1", "b1", "<ovf/>"))
    await catalog.commit(store, manifest)
    return await catalog.find(store, "b1")


def expected(m: DiskMap, chunks: dict[str, bytes]) -> bytes:
    out = bytearray(m.size)
    for seg in m:
        out[seg.offset:seg.end] = chunks[seg.digest][seg.skip:seg.skip + seg.length]
    return bytes(out)


def disk_layout():
    raw = [os.urandom(C) for _ in range(4)] + [b"compressible " * (C // 13) + b"x" * (C % 13)]
    chunks = {digest(r): r for r in raw}
    d = list(chunks)
    size = 10 * C + 100  # not a multiple of anything
    segments = [
        Segment(0, C, d[0]), Segment(C, C, d[1]),                  # contiguous: one PUT
        Segment(3 * C, C // 2, d[2], skip=C // 4),                 # part of a chunk, after a zero gap
        Segment(3 * C + C // 2, C, d[4]),                          # straddles a window boundary
        Segment(6 * C, C, d[0]),                                   # a chunk used twice
        Segment(8 * C, C, d[3]), Segment(10 * C, 100, d[3], skip=C - 100),  # the disk's ragged end
    ]
    return size, segments, chunks


async def test_the_planned_puts_rebuild_the_disk_and_send_no_zeros():
    store = MemoryStore()
    size, segments, chunks = disk_layout()
    manifest = await restore_point(store, size, segments, chunks)
    disk = manifest.disk("disk1")
    image, sent = bytearray(size), 0
    async with Windows(manifest, disk, ChunkFetcher(store, ChunkCodec(manifest.chunk_hash))) as windows:
        async for plan, fetched in windows:
            for run in put_runs(plan, max_put=C + C // 2):
                assert all(a.end == b.offset for a, b in itertools.pairwise(run)), "a PUT with a gap"
                assert sum(s.length for s in run) <= C + C // 2 or len(run) == 1
                body = b"".join(bytes(fetched[s.digest][s.skip:s.skip + s.length]) for s in run)
                image[run[0].offset:run[0].offset + len(body)] = body
                sent += len(body)
    assert bytes(image) == expected(disk.map, chunks)
    assert sent == disk.map.data_bytes()
    assert manifest.chunk_hash == CHUNK_HASH


def test_put_runs_join_contiguous_data_up_to_the_limit():
    seg = [Segment(0, 4, "a"), Segment(4, 4, "b"), Segment(8, 4, "c"), Segment(20, 4, "d")]
    plan = [(s.offset, s.length, s) for s in seg[:3]] + [(12, 8, None), (20, 4, seg[3])]
    assert put_runs(plan, max_put=8) == [[seg[0], seg[1]], [seg[2]], [seg[3]]]
    assert put_runs(plan, max_put=100) == [seg[:3], [seg[3]]]
    assert put_runs([(0, 10, None)]) == []


async def test_a_chunk_whose_pack_is_gone_is_an_error_in_its_window():
    store = MemoryStore()
    size, segments, chunks = disk_layout()
    manifest = await restore_point(store, size, segments, chunks)
    lost = manifest.chunks[segments[0].digest].pack_key
    await store.delete(lost)
    fetcher = ChunkFetcher(store, ChunkCodec(manifest.chunk_hash))
    async with Windows(manifest, manifest.disk("disk1"), fetcher) as windows:
        plan, fetched = await anext(windows)
    assert isinstance(fetched[segments[0].digest], ChunkMissing) and lost in str(fetched[segments[0].digest])


async def test_a_map_naming_a_chunk_with_no_location_fails_naming_the_disk_and_offset():
    store = MemoryStore()
    size, segments, chunks = disk_layout()
    manifest = await restore_point(store, size, segments, chunks)
    del manifest.chunks[segments[2].digest]
    fetcher = ChunkFetcher(store, ChunkCodec(manifest.chunk_hash))
    async with Windows(manifest, manifest.disk("disk1"), fetcher) as windows:
        with pytest.raises(RestoreDataError, match=f"disk disk1 at offset {3 * C}"):
            async for _ in windows:
                pass


async def test_scattered_chunks_cost_one_get_per_pack_and_window_and_are_counted(monkeypatch):
    """Chunks of a window scattered over two packs, in any order on the disk: each pack is read with one coalesced
    GET per window, not one per chunk; the fetcher counts the GETs and bytes it asked the store for."""
    monkeypatch.setattr(upload, "WINDOW", 8 * C)  # the whole disk in one window
    store = MemoryStore()
    raw = [os.urandom(C) for _ in range(6)]
    chunks = {digest(r): r for r in raw}
    d = list(chunks)
    order = [d[5], d[0], d[3], d[1], d[4], d[2]]  # packs of two chunks each: the map jumps between them
    segments = [Segment(i * C, C, name) for i, name in enumerate(order)]
    manifest = await restore_point(store, 8 * C, segments, chunks)
    packs = {loc.pack_key for loc in manifest.chunks.values()}
    assert len(packs) == 3
    fetcher = ChunkFetcher(store, ChunkCodec(manifest.chunk_hash))
    async with Windows(manifest, manifest.disk("disk1"), fetcher) as windows:
        async for _, fetched in windows:
            assert all(bytes(fetched[name]) == chunks[name] for name in order)
    assert fetcher.gets == len(packs)
    assert fetcher.fetched == sum(loc.length for loc in manifest.chunks.values())
