"""The writer's packing in-process: chunks in through the product's record loop, packs into the in-memory store,
pack records out on the in-memory bus. Offsets are committed only once the pack holding their chunks is sealed;
a pack the store refuses is reported and nothing from it on is committed."""
from __future__ import annotations

import asyncio
import os

import pytest

from olvm_backup.errors import StoreError
from olvm_backup.format.chunks import CHUNK_HASH, compress, decompress, digest
from olvm_backup.objectstore.memory import MemoryStore
from olvm_backup.repository.chunkindex import ChunkIndex
from olvm_backup.repository.packs import PackBuilder
from schemas import ChunkData, PackStored, StoreFault
from schemas.topics import CHUNKS, PACKS, STORE_FAULTS
from services.writer import writer as writer_module
from services.writer.writer import PackRefused, Writer
from tests.twins import PREFIX, ListLoop, MemoryBus, run_until_drained

KIB, MIB = 1024, 1024 * 1024
TOPIC = CHUNKS.member(PREFIX, "b1", "0")


@pytest.fixture(autouse=True)
def seal_when_idle(monkeypatch):
    monkeypatch.setattr(writer_module, "FLUSH_AFTER_IDLE", 0.0)  # the first empty poll seals a partial pack


def chunk(raw: bytes, backup: str = "b1") -> ChunkData:
    codec, stored = compress(raw)
    return ChunkData(backup_id=backup, task_id="t1", digest=digest(raw), raw_size=len(raw), codec=codec, data=stored)


def raws(count: int, size: int = 64 * KIB) -> list[bytes]:
    # Every other one compressible, so both codecs go into the packs.
    return [os.urandom(size) if n % 2 else f"chunk {n} ".encode() * (size // 8) for n in range(count)]


def setup(store: MemoryStore, *, max_size: int = 64 * MIB):
    bus = MemoryBus()
    loop = ListLoop(bus, [CHUNKS])
    writer = Writer(bus, loop, PackBuilder(store, part_size=5 * MIB, max_size=max_size), "w1")
    return bus, loop, writer


def run(loop: ListLoop, writer: Writer):
    return run_until_drained(loop, writer.on_chunk, commit_each=False, after_batch=writer.after_batch, poll_ms=0)


async def assert_restorable(store: MemoryStore, data: list[bytes]) -> None:
    """Every chunk found through the index objects in the store, read back by range and verified."""
    index = await ChunkIndex().load(store)
    for raw in data:
        where = index.get(digest(raw))
        assert where is not None, "a chunk is missing from the stored indexes"
        stored = await store.get(where.pack_key, where.offset, where.length)
        assert decompress(where.codec, stored, where.raw_size, digest(raw), CHUNK_HASH) == raw


async def test_chunks_become_a_pack_its_index_and_a_record_and_then_their_offsets_are_committed():
    store = MemoryStore()
    bus, loop, writer = setup(store)
    data = raws(10)
    fed = [loop.feed(TOPIC, chunk(raw), partition=n % 2) for n, raw in enumerate(data)]
    loop.feed(TOPIC, chunk(data[0]), partition=0)  # a redone task's chunk: one copy in the pack

    await run(loop, writer)

    [record] = bus.records(PACKS)
    assert isinstance(record, PackStored) and record.writer == "w1"
    assert sorted(e[0] for e in record.entries) == sorted(digest(raw) for raw in data)
    assert sorted([i.key async for i in store.list("")]) == [f"index/{record.pack_key.rsplit('/', 1)[-1]}",
                                                             record.pack_key]
    await assert_restorable(store, data)
    assert loop.committed == {fed[0]: 6, fed[1]: 5}
    assert store.pending_uploads() == []


async def test_no_offset_is_committed_before_its_pack_is_durable():
    sealing, go_on = asyncio.Event(), asyncio.Event()

    async def slow_seal(op, key, part):
        if key.startswith("packs/") and op in ("put_object", "complete_multipart_upload"):
            sealing.set()
            await go_on.wait()

    store = MemoryStore(before=slow_seal)
    bus, loop, writer = setup(store)
    data = raws(4)
    for raw in data:
        loop.feed(TOPIC, chunk(raw))
    running = asyncio.create_task(run(loop, writer))
    await asyncio.wait_for(sealing.wait(), 5)
    for _ in range(20):  # the loop goes on polling while the seal waits
        await asyncio.sleep(0)
    assert loop.committed == {} and bus.records(PACKS) == []
    go_on.set()
    await asyncio.wait_for(running, 5)
    assert len(bus.records(PACKS)) == 1 and sum(loop.committed.values()) == 4


async def test_full_packs_are_sealed_announced_and_committed_in_order():
    store = MemoryStore()
    bus, loop, writer = setup(store, max_size=200 * KIB)
    data = [os.urandom(64 * KIB) for _ in range(13)]  # stored as they are: a pack is full after 4
    for raw in data:
        tp = loop.feed(TOPIC, chunk(raw))

    await run(loop, writer)

    packs = bus.records(PACKS)
    assert [len(p.entries) for p in packs] == [4, 4, 4, 1]
    # Commit n covers no chunk beyond packs 1..n. (It lags by one: the chunk that fills a pack is handed to the
    # seal before the loop counts it as processed, so its offset goes with the next pack; a redelivery, harmless.)
    committed = [c[tp] for c in loop.commits]
    assert len(committed) == len(packs)
    assert all(c <= sum(len(p.entries) for p in packs[:n + 1]) for n, c in enumerate(committed)), committed
    assert loop.committed == {tp: 13}
    await assert_restorable(store, data)


@pytest.mark.parametrize("refused", ["put_object", "upload_part", "complete_multipart_upload"])
async def test_a_refused_pack_is_reported_to_its_backups_and_nothing_is_committed(refused):
    async def store_gone(op, key, part):
        if op == refused and key.startswith("packs/"):
            raise StoreError(f"{key}: connection refused")

    store = MemoryStore(before=store_gone)
    bus, loop, writer = setup(store)
    size = 64 * KIB if refused == "put_object" else MIB  # a pack under one part goes up with one put
    count = 4 if refused == "put_object" else 7
    data = [os.urandom(size) for _ in range(count)]
    for n, raw in enumerate(data):
        loop.feed(TOPIC, chunk(raw, backup=f"b{n % 2 + 1}"))

    with pytest.raises(PackRefused, match="connection refused"):
        await run(loop, writer)

    [fault] = bus.records(STORE_FAULTS)
    assert isinstance(fault, StoreFault)
    assert fault.backup_ids == ["b1", "b2"] and fault.writer == "w1" and "connection refused" in fault.error
    assert fault.chunks == (4 if refused == "upload_part" else count)  # a part fails as the 5th chunk goes in
    assert bus.records(PACKS) == [] and loop.committed == {}
    assert [i.key async for i in store.list("")] == [] and store.pending_uploads() == []


async def test_a_store_fault_that_cannot_be_told_still_ends_the_writer():
    async def store_gone(op, key, part):
        if op == "put_object" and key.startswith("packs/"):
            raise StoreError("no route to host")

    async def broker_gone(topic):
        raise ConnectionError("broker gone too")

    store = MemoryStore(before=store_gone)
    bus, loop, writer = setup(store)
    bus.before = broker_gone
    loop.feed(TOPIC, chunk(os.urandom(KIB)))
    with pytest.raises(PackRefused, match="no route to host"):
        await run(loop, writer)
    assert loop.committed == {}
