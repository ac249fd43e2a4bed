"""A read task in-process: extents clipped to the task, aligned chunks, holes and zero chunks never stored, a chunk
the store holds (or this task just sent) never sent again. The disk is a buffer behind the one call read_task
makes of its imageio data source, `await read(offset, length)`."""
from __future__ import annotations

import os

from olvm_backup.crypto.sealing import RepoKey, Sealer
from olvm_backup.format.chunks import CHUNK_HASH, ChunkCodec, decompress, digest
from olvm_backup.planning import Extent
from olvm_backup.repository.chunkindex import ChunkIndex
from schemas import ChunkData, ReadTask
from services.reader.reading import read_task

KIB = 1024
C = 64 * KIB  # the task's chunk size


class Disk:
    """A disk image in memory, read the way imageio serves a ticket; remembers every range asked for."""

    def __init__(self, image: bytes) -> None:
        self.image = image
        self.reads: list[tuple[int, int]] = []

    async def read(self, offset: int, length: int) -> bytes:
        assert 0 <= offset and offset + length <= len(self.image), (offset, length)
        self.reads.append((offset, length))
        return self.image[offset:offset + length]


def task(offset: int, length: int) -> ReadTask:
    return ReadTask(backup_id="b1", task_id="t1", disk_id="d1", transfer_url="https://host/images/t",
                    incremental=False, offset=offset, length=length, chunk_size=C, chunk_topic="t.chunks.b1.0")


A, B, D, KNOWN = (os.urandom(C) for _ in range(4))
# chunk:   0  1  2     3       4  5      6  7
IMAGE = A + B + bytes(C) + bytes(C) + A + KNOWN + D + D[: C // 2] + bytes(C // 2)
EXTENTS = [Extent(0, 2 * C, True), Extent(2 * C, C, False), Extent(3 * C, 5 * C, True)]  # chunk 2 is a hole


PLAIN_CHUNKS = ChunkCodec()


async def read(offset: int, length: int, index: ChunkIndex | None = None, codec: ChunkCodec = PLAIN_CHUNKS):
    disk, sent = Disk(IMAGE), []

    async def publish(chunk: ChunkData) -> None:
        sent.append(chunk)

    result = await read_task(task(offset, length), disk, EXTENTS, index or ChunkIndex(), publish, codec)
    return result, disk, sent


async def test_a_task_stores_each_new_chunk_once_and_only_reads_data():
    index = ChunkIndex()
    index.add_pack("packs/p0", [(digest(KNOWN), 0, 10, C, "zstd")])

    result, disk, sent = await read(0, len(IMAGE), index)

    assert sorted(disk.reads) == [(n * C, C) for n in (0, 1, 3, 4, 5, 6, 7)], "the hole was read"
    assert result.bytes_read == 7 * C
    assert result.zeros == [(2 * C, C), (3 * C, C)]  # the hole, and the allocated chunk that reads as zeros
    last = D[: C // 2] + bytes(C // 2)
    assert result.chunks == [(0, C, digest(A)), (C, C, digest(B)), (4 * C, C, digest(A)), (5 * C, C, digest(KNOWN)),
                             (6 * C, C, digest(D)), (7 * C, C, digest(last))]
    # A twice in the task and KNOWN in the store: neither sent again.
    assert sorted(c.digest for c in sent) == sorted(digest(x) for x in (A, B, D, last))
    for c in sent:
        raw = decompress(c.codec, c.data, c.raw_size, c.digest, CHUNK_HASH)
        assert digest(raw) == c.digest and c.backup_id == "b1" and c.task_id == "t1"
    assert result.bytes_new == sum(len(c.data) for c in sent)
    assert (result.offset, result.length, result.disk_id) == (0, len(IMAGE), "d1")


async def test_a_task_reads_only_its_own_range_of_the_disks_extents():
    result, disk, sent = await read(2 * C, 3 * C)  # the hole, the zero chunk, the second A
    assert disk.reads == [(3 * C, C), (4 * C, C)]
    assert result.zeros == [(2 * C, C), (3 * C, C)]
    assert result.chunks == [(4 * C, C, digest(A))]
    assert [c.digest for c in sent] == [digest(A)]  # another task's copy does not count: the index does


async def test_a_task_of_holes_reads_nothing():
    disk, sent = Disk(IMAGE), []

    async def publish(chunk: ChunkData) -> None:
        sent.append(chunk)

    result = await read_task(task(0, 4 * C), disk, [Extent(0, len(IMAGE), False)], ChunkIndex(), publish,
                             ChunkCodec())
    assert disk.reads == [] and sent == [] and result.chunks == []
    assert result.zeros == [(0, 4 * C)] and result.bytes_read == 0


async def test_in_an_encrypted_repository_chunks_leave_the_reader_sealed_and_named_by_the_repositorys_key():
    key = RepoKey.generate()
    codec = ChunkCodec.for_writing(Sealer(key))
    result, _, sent = await read(0, len(IMAGE), codec=codec)

    assert result.chunks[0] == (0, C, key.chunk_name(A)) and key.chunk_name(A) != digest(A)
    assert sent and all(c.codec.endswith("+gcm") for c in sent)
    for c in sent:
        assert A[:64] not in c.data and D[:64] not in c.data, "disk bytes on the chunk topic in clear"
        assert codec.load(c.codec, c.data, c.raw_size, c.digest) in (A, B, D, KNOWN, D[: C // 2] + bytes(C // 2))
    other = ChunkCodec.for_writing(Sealer(RepoKey.generate()))  # another repository's key opens nothing
    for c in sent:
        try:
            other.load(c.codec, c.data, c.raw_size, c.digest)
        except Exception as e:
            assert "authentication failed" in str(e)
        else:
            raise AssertionError("a chunk opened with another repository's key")
