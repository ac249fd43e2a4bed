"""A restore point disk read as a random-access image (olvm_backup/access/image.py), from the in-memory store:
every byte equals the raw image it was made from, holes included, to the last byte and past it; the extents are the
map's; a corrupt byte in a pack fails the read naming the restore point, the disk and the offset; threads and a
reader going forward read the same bytes; an encrypted restore point reads the same."""
from __future__ import annotations

import asyncio
import concurrent.futures
import io
import random

import pytest

from olvm_backup.access.image import ImageReadError, RestorePointImage
from olvm_backup.access.mapview import MapView
from olvm_backup.config import RepositorySettings
from olvm_backup.crypto.sealing import PLAIN
from olvm_backup.format.diskmap import DiskMap, Segment
from olvm_backup.objectstore.memory import MemoryStore
from olvm_backup.repository import keyring
from olvm_backup.repository.sealedstore import sealed
from olvm_backup.secret import Secret
from tests.restore_points import store_restore_point

CHUNK = 256 * 1024


def raw_image(seed: int = 7) -> bytes:
    """9.5 chunks... of data, zeros (holes in the map), text (compresses) and a short last chunk."""
    rnd = random.Random(seed)
    parts = []
    for i in range(38):
        kind = rnd.choice(["data", "zero", "text"]) if i not in (0, 37) else "data"
        if kind == "zero":
            parts.append(bytes(CHUNK))
        elif kind == "text":
            parts.append((f"chunk {i} " * CHUNK)[:CHUNK].encode())
        else:
            parts.append(rnd.randbytes(CHUNK))
    return b"".join(parts) + rnd.randbytes(CHUNK // 3)


def stored(raw: bytes, sealer=PLAIN, store=None):
    store = store or MemoryStore()
    manifest = asyncio.run(store_restore_point(store, {"root": raw}, backup_id="rp1", chunk_size=CHUNK,
                                               sealer=sealer))
    return store, manifest


def test_pread_equals_the_raw_image_holes_and_end_included():
    raw = raw_image()
    store, manifest = stored(raw)
    rnd = random.Random(1)
    with RestorePointImage(store, PLAIN, manifest, manifest.disk("root")) as image:
        assert (image.size, image.name, image.backup_id) == (len(raw), "root", "rp1")
        for _ in range(300):
            offset = rnd.randrange(0, len(raw) + 10)
            length = rnd.choice([1, 512, 4096, 70_000, CHUNK, 3 * CHUNK + 17])
            assert image.pread(length, offset) == raw[offset:offset + length], (offset, length)
        assert image.pread(CHUNK, len(raw) - 100) == raw[-100:]  # clipped at the end
        assert image.pread(10, len(raw)) == b"" and image.pread(0, 0) == b""
        f = image.stream()
        f.seek(-1000, io.SEEK_END)
        assert f.read() == raw[-1000:] and f.tell() == len(raw)
        f.seek(CHUNK - 5)
        assert f.read(10) == raw[CHUNK - 5:CHUNK + 5]


def test_extents_are_the_maps_holes_and_data():
    raw = raw_image()
    store, manifest = stored(raw)
    expected = []
    for offset in range(0, len(raw), CHUNK):
        n = min(CHUNK, len(raw) - offset)
        data = raw[offset:offset + n] != bytes(n)
        if expected and expected[-1][2] == data:
            expected[-1] = (expected[-1][0], expected[-1][1] + n, data)
        else:
            expected.append((offset, n, data))
    assert any(not data for _, _, data in expected)
    with RestorePointImage(store, PLAIN, manifest, manifest.disk("root")) as image:
        assert image.extents(0, len(raw) + CHUNK) == expected
        # a range inside: clipped to it, and still covering it
        inner = image.extents(CHUNK + 10, 5 * CHUNK)
        assert inner[0][0] == CHUNK + 10 and sum(n for _, n, _ in inner) == 5 * CHUNK


def test_mapview_plan_and_extents_on_a_hand_made_map():
    view = MapView(DiskMap(100, [Segment(10, 20, "a"), Segment(30, 10, "b", skip=5), Segment(60, 40, "c")]))
    assert [(o, n, s and (s.digest, s.skip)) for o, n, s in view.plan(15, 70)] == [
        (15, 15, ("a", 5)), (30, 10, ("b", 5)), (40, 20, None), (60, 10, ("c", 0))]
    assert view.extents(0, 1000) == [(0, 10, False), (10, 30, True), (40, 20, False), (60, 40, True)]
    assert view.extents(100, 5) == []


def test_a_corrupt_pack_byte_fails_the_read_naming_restore_point_disk_and_offset():
    raw = raw_image()
    store, manifest = stored(raw)
    disk = manifest.disk("root")
    victim = disk.map.segments[len(disk.map.segments) // 2]
    where = manifest.chunks[victim.digest]
    pack = bytearray(store._objects[where.pack_key])
    pack[where.offset + where.length // 2] ^= 0x40
    store._objects[where.pack_key] = bytes(pack)
    with RestorePointImage(store, PLAIN, manifest, disk) as image:
        assert image.pread(100, 0) == raw[:100]  # the rest still reads
        with pytest.raises(ImageReadError, match=f"restore point rp1 disk root at offset {victim.offset + 1000}: "
                                                 f"corrupt chunk {victim.digest}"):
            image.pread(5000, victim.offset + 1000)
        with pytest.raises(ImageReadError, match=f"at offset {victim.offset}:"):
            image.stream().read()  # a whole read stops at it too: never wrong bytes
    del store._objects[where.pack_key]
    with RestorePointImage(store, PLAIN, manifest, disk) as image, \
            pytest.raises(ImageReadError, match=f"disk root at offset {victim.offset}: chunk .* is missing"):
        image.pread(victim.length, victim.offset)


def test_threads_and_a_sequential_reader_read_the_same_bytes_with_few_gets():
    raw = raw_image(seed=11)
    store, manifest = stored(raw)
    with RestorePointImage(store, PLAIN, manifest, manifest.disk("root"), cache_bytes=4 * CHUNK,
                           readahead_bytes=2 * CHUNK) as image:
        def read(offset: int) -> bool:
            return image.pread(50_000, offset) == raw[offset:offset + 50_000]

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert all(pool.map(read, random.Random(2).sample(range(len(raw)), 200)))
    store.requests.clear()
    with RestorePointImage(store, PLAIN, manifest, manifest.disk("root"), cache_bytes=8 * CHUNK,
                           readahead_bytes=4 * CHUNK) as image:
        f = image.stream()
        got = b"".join(iter(lambda: f.read(64 * 1024), b""))
    assert got == raw
    data_chunks = len(manifest.disk("root").map.segments)
    # 64 KiB reads of 256 KiB chunks: each chunk fetched once, in read-ahead batches
    assert store.requests["get_object"] <= data_chunks


def test_an_encrypted_restore_point_reads_the_same():
    raw = raw_image(seed=3)
    inner = MemoryStore()
    sealer = asyncio.run(keyring.init_repository(inner, RepositorySettings(password=Secret("pw for tests")),
                                                 n=2 ** 12))
    store, manifest = stored(raw, sealer, sealed(inner, sealer))
    assert manifest.chunks[next(iter(manifest.chunks))].codec.endswith("+gcm")
    with RestorePointImage(store, sealer, manifest, manifest.disk("root")) as image:
        assert image.stream().read() == raw


def test_open_image_holds_the_restore_point_while_open(s3_settings, tmp_path):
    """Against moto, as the CLI opens it: the repository from settings, the restore point held in use (prune
    keeps it) while the image is open and released after."""
    from olvm_backup.access.image import open_image
    from olvm_backup.config import Settings
    from olvm_backup.objectstore import open_store
    from olvm_backup.repository.holds import in_use_ids
    from tests.restore_points import make_restore_point

    raw = raw_image(seed=5)
    settings = Settings(data_dir=tmp_path, s3=s3_settings)
    make_restore_point(settings, {"root": raw}, backup_id="rp9", chunk_size=CHUNK)

    def held() -> set[str]:
        async def ids():
            async with open_store(s3_settings) as store:
                return await in_use_ids(store)
        return asyncio.run(ids())

    with open_image(settings, "rp9", "root", by="tests") as image:
        assert held() == {"rp9"}
        assert image.stream().read() == raw
    assert held() == set()
