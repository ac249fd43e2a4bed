"""An encrypted repository in the store (the in-memory twin): no plaintext at rest, and every kind of tampering —
a flipped byte, a pack copied in from another repository, a manifest edited or swapped in place, a plaintext object
slipped in — refused by verify, export and the catalog, naming the object."""
from __future__ import annotations

import os

import pytest

from olvm_backup.crypto.sealing import RepoKey, Sealer, Tampered
from olvm_backup.format.chunks import ChunkCodec
from olvm_backup.format.diskmap import DiskMap, Segment
from olvm_backup.format.manifest import DiskRecord, Manifest, encode_manifest
from olvm_backup.objectstore.memory import MemoryStore
from olvm_backup.repository import catalog
from olvm_backup.repository.chunkindex import ChunkIndex, index_key
from olvm_backup.repository.export import ExportError, export_disk
from olvm_backup.repository.packs import PackBuilder
from olvm_backup.repository.sealedstore import sealed
from olvm_backup.repository.verify import verify

CHUNK = 64 * 1024
PATTERN = b"OLVM-GUEST-PATTERN-"  # what a guest wrote: must never be found at rest


async def backup(store, sealer: Sealer, vm: str = "vm1", backup_id: str = "b1") -> Manifest:
    codec = ChunkCodec.for_writing(sealer)
    raws = [PATTERN * (CHUNK // len(PATTERN)), os.urandom(CHUNK), PATTERN[::-1] * 100]
    packs = PackBuilder(store, part_size=5 * 1024 * 1024)
    segments = []
    for i, raw in enumerate(raws):
        name = codec.name(raw)
        kind, stored = codec.store(raw, name)
        await packs.add(name, kind, len(raw), stored)
        segments.append(Segment(i * CHUNK, len(raw), name))
    pack_key, entries = await packs.seal()
    index = ChunkIndex()
    index.add_pack(pack_key, entries)
    disk = DiskRecord("d1", "root", 4 * CHUNK, "cow", "virtio_scsi", True, True, True, "sd", "full", "",
                      DiskMap(4 * CHUNK, segments))
    ovf_key = await catalog.write_ovf(store, vm, backup_id, "<ovf>web-secret-name</ovf>")
    m = Manifest(backup_id, vm, "web-secret-name", "full", 1.0, 2.0, "cp1", None, None, ovf_key, "r", "test",
                 [disk], {d: index.get(d) for d in disk.map.digests()}, chunk_hash=codec.chunk_hash)
    await catalog.commit(store, m)
    return m


@pytest.fixture
def raw():
    return MemoryStore()


@pytest.fixture
def sealer():
    return Sealer(RepoKey.generate())


async def all_bytes(store) -> list[tuple[str, bytes]]:
    return [(info.key, await store.get(info.key)) async for info in store.list("")]


async def test_nothing_readable_rests_in_the_store_and_everything_reads_back(raw, sealer, tmp_path):
    store = sealed(raw, sealer)
    m = await backup(store, sealer)
    for key, body in await all_bytes(raw):
        assert PATTERN not in body and PATTERN[::-1] not in body and b"web-secret-name" not in body, key
    again = await catalog.find(store, "b1")
    assert again.vm_name == "web-secret-name" and again.chunk_hash == "blake3-keyed"
    assert await catalog.read_ovf(store, again) == "<ovf>web-secret-name</ovf>"
    assert (await verify(store, again, sealer)).ok
    out = tmp_path / "root.raw"
    await export_disk(store, again, again.disks[0], out, sealer)
    assert out.read_bytes()[:CHUNK] == PATTERN * (CHUNK // len(PATTERN)) + bytes(CHUNK % len(PATTERN))
    await ChunkIndex().load(store)  # the sealed pack index reads back
    assert m.chunks == again.chunks


async def test_a_flipped_byte_in_a_pack_is_refused_by_verify_and_export_naming_the_pack(raw, sealer, tmp_path):
    store = sealed(raw, sealer)
    m = await backup(store, sealer)
    victim = m.disks[0].map.segments[1]
    where = m.chunks[victim.digest]
    body = bytearray(await raw.get(where.pack_key))
    body[where.offset + where.length // 2] ^= 0x01
    await raw.put(where.pack_key, bytes(body))

    report = await verify(store, m, sealer)
    assert [(d.offset, d.pack) for d in report.damage] == [(victim.offset, where.pack_key)]
    assert "authentication failed" in report.damage[0].problem
    with pytest.raises(ExportError, match=f"offset {victim.offset}"):
        await export_disk(store, m, m.disks[0], tmp_path / "root.raw", sealer)


async def test_a_pack_copied_in_from_another_repository_is_refused(raw, sealer):
    store = sealed(raw, sealer)
    m = await backup(store, sealer)
    other_raw = MemoryStore()
    other = Sealer(RepoKey.generate())
    theirs = await backup(sealed(other_raw, other), other)
    # Their pack laid over ours, under our pack's name: same layout, another repository's key.
    ours_key = m.chunks[m.disks[0].map.segments[0].digest].pack_key
    await raw.put(ours_key, await other_raw.get(theirs.chunks[theirs.disks[0].map.segments[0].digest].pack_key))

    report = await verify(store, m, sealer)
    assert not report.ok and {d.pack for d in report.damage} == {ours_key}


async def test_a_manifest_edited_swapped_or_slipped_in_is_refused_naming_it(raw, sealer):
    store = sealed(raw, sealer)
    m = await backup(store, sealer)
    await backup(store, sealer, backup_id="b2")
    key = catalog.manifest_key("vm1", "b1")

    body = bytearray(await raw.get(key))
    body[-20] ^= 0x01  # edited in place
    await raw.put(key, bytes(body))
    with pytest.raises(Tampered, match=f"^{key}: authentication failed"):
        await catalog.find(store, "b1")

    await raw.put(key, await raw.get(catalog.manifest_key("vm1", "b2")))  # another restore point's, moved here
    with pytest.raises(Tampered, match=f"^{key}: authentication failed"):
        await catalog.find(store, "b1")

    await raw.put(key, encode_manifest(m))  # a plaintext manifest: someone without the key wrote it
    with pytest.raises(Tampered, match=f"^{key}: not sealed, in an encrypted repository"):
        await catalog.find(store, "b1")


async def test_plaintext_restore_points_from_before_encryption_still_read_when_listed(raw):
    plain = await backup(sealed(raw, Sealer()), Sealer())  # written before encryption was turned on
    from blake3 import blake3
    legacy = {info.key: blake3(await raw.get(info.key)).hexdigest()
              async for info in raw.list("") if info.key.startswith(("backups/", "index/"))}
    key = RepoKey.generate()
    store = sealed(raw, Sealer(key, legacy))
    again = await catalog.find(store, "b1")
    assert again.chunk_hash == "blake3" and again.chunks == plain.chunks
    assert (await verify(store, again, Sealer(key, legacy))).ok  # its chunks are plain, named without a key
    await ChunkIndex().load(store)

    # A listed object changed since: refused.
    await raw.put(index_key(next(iter(again.chunks.values())).pack_key.rsplit("/", 1)[-1]), b"\x80")
    with pytest.raises(Tampered, match="not one of the objects written before"):
        await ChunkIndex().load(store)


async def test_an_encrypted_restore_point_without_the_key_is_refused_clearly(raw, sealer):
    await backup(sealed(raw, sealer), sealer)
    with pytest.raises(Tampered, match="it is encrypted, and this repository has no key configured"):
        await catalog.find(sealed(raw, Sealer()), "b1")
