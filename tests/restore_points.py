"""Restore points made straight from raw image files, for tests of what reads them (file-level restore, mounts,
network exports): each image is cut into chunks as the readers cut a disk (fixed size, aligned, all-zero chunks not
stored), the chunks go into packs with their index through the product's PackBuilder and ChunkCodec, and the
manifest is committed through the catalog. No pipeline: a restore point in milliseconds.

    manifest = await store_restore_point(store, {"root": Path("disk.raw")}, backup_id="rp1")
    manifest = make_restore_point(settings, {"root": path})   # sync: opens the store settings name (moto)
    with corrupt_chunk_at(settings, "rp1", "root", offset) as (start, end): ...  # a damaged chunk, then mended
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from pathlib import Path
from typing import Iterator, Mapping

from olvm_backup.config import Settings
from olvm_backup.crypto.sealing import PLAIN, Sealer
from olvm_backup.format.chunks import ChunkCodec, is_zero
from olvm_backup.format.diskmap import DiskMap, Segment
from olvm_backup.format.manifest import DiskRecord, Location, Manifest
from olvm_backup.objectstore import ObjectStore
from olvm_backup.repository import catalog
from olvm_backup.repository.packs import PackBuilder

MIB = 1 << 20


async def store_restore_point(store: ObjectStore, disks: Mapping[str, Path | bytes], *, backup_id: str = "rp1",
                              vm_id: str = "vm1", vm_name: str = "vm1", sealer: Sealer = PLAIN,
                              chunk_size: int = MIB, completed_at: float | None = None) -> Manifest:
    """A full restore point of VM `vm_id` whose disks (name -> raw image file or bytes) hold those bytes. `store` is
    the repository's store as the product opens it (sealed(store, sealer) for an encrypted one)."""
    codec = ChunkCodec.for_writing(sealer)
    packs = PackBuilder(store, part_size=5 * MIB)
    locations: dict[str, Location] = {}
    pending: set[str] = set()

    async def seal() -> None:
        pack_key, entries = await packs.seal()
        for digest, offset, length, raw_size, chunk_codec in entries:
            locations.setdefault(digest, Location(pack_key, offset, length, raw_size, chunk_codec))
        pending.clear()

    records = []
    for i, (name, source) in enumerate(disks.items()):
        raw = source if isinstance(source, bytes) else None
        size = len(raw) if raw is not None else Path(source).stat().st_size
        segments = []
        with (open(source, "rb") if raw is None else contextlib.nullcontext()) as f:
            for offset in range(0, size, chunk_size):
                data = raw[offset:offset + chunk_size] if raw is not None else f.read(chunk_size)
                if is_zero(data):
                    continue  # as the readers: zeros are never stored, the map leaves a hole
                digest = codec.name(data)
                if digest not in locations and digest not in pending:
                    stored_codec, stored = codec.store(data, digest)
                    await packs.add(digest, stored_codec, len(data), stored)
                    pending.add(digest)
                    if packs.full:
                        await seal()
                segments.append(Segment(offset, len(data), digest))
        records.append(DiskRecord(f"{vm_id}-disk{i}", name, size, "raw", "virtio_scsi", i == 0, True, True, "sd",
                                  "full", "", DiskMap(size, segments), bytes_read=size))
    if not packs.empty:
        await seal()
    ovf_key = await catalog.write_ovf(store, vm_id, backup_id, f"<ovf vm='{vm_name}'/>")
    now = time.time() if completed_at is None else completed_at
    manifest = Manifest(backup_id, vm_id, vm_name, "full", now - 1, now, None, None, None, ovf_key, "r-" + backup_id,
                        "tests", records, {d: locations[d] for r in records for d in r.map.digests()},
                        chunk_hash=codec.chunk_hash, consistency="at rest")
    await catalog.commit(store, manifest)
    return manifest


def make_restore_point(settings: Settings, disks: Mapping[str, Path | bytes], **kwargs) -> Manifest:
    """store_restore_point into the repository `settings` name, made a plain repository first if it is no repository
    yet (an encrypted one is opened with settings.repository). Callable from inside a running loop (its own)."""
    from olvm_backup.objectstore import open_store
    from olvm_backup.repository.keyring import init_repository, read_config
    from olvm_backup.repository.sealedstore import open_sealed

    async def make() -> Manifest:
        async with open_store(settings.s3) as store:
            if await read_config(store) is None:
                await init_repository(store, settings.repository, encrypt=False)
        async with open_sealed(settings, ensure_bucket=False) as (store, sealer):
            return await store_restore_point(store, disks, sealer=sealer, **kwargs)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, make()).result()


@contextlib.contextmanager
def corrupt_chunk_at(settings: Settings, backup_id: str, disk: str, offset: int) -> Iterator[tuple[int, int]]:
    """Flip one byte, in its pack, of the chunk restore point `backup_id` holds at `offset` of `disk`, for the block;
    yields the disk range (start, end) that chunk covers, which a read error must name an offset in. The byte is put
    back after, so that other tests reading the repository (and its shared chunks) never depend on this one."""
    from olvm_backup.objectstore import open_store
    from olvm_backup.repository.sealedstore import open_sealed

    async def flip(offset: int) -> tuple[int, int]:
        async with open_sealed(settings, ensure_bucket=False) as (store, _), open_store(settings.s3) as plain:
            manifest = await catalog.find(store, backup_id)
            seg = next(s for s in manifest.disk(disk).map if s.offset <= offset < s.end)
            loc = manifest.chunks[seg.digest]
            pack = bytearray(await plain.get(loc.pack_key))
            pack[loc.offset + loc.length // 2] ^= 0x01
            await plain.put(loc.pack_key, bytes(pack))
            return seg.offset, seg.end

    def run(offset: int) -> tuple[int, int]:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, flip(offset)).result()

    damaged = run(offset)
    try:
        yield damaged
    finally:
        run(offset)
