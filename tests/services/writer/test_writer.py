"""The writer service as a process: chunks in, durable packs and pack records out; a killed writer loses nothing."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
import time

import pytest


from olvm_backup.repository.chunkindex import ChunkIndex
from olvm_backup.config import to_environ
from olvm_backup.format.chunks import CHUNK_HASH, compress, decompress, digest
from olvm_backup.kafka import Bus, create_topic, delete_topics, ensure_topics
from olvm_backup.kafka.follow import Follower
from olvm_backup.objectstore import open_store
from olvm_backup.stack import components
from olvm_backup.stack.processes import ManagedProcess, free_port
from schemas import ChunkData, StoreFault
from tests.conftest import plain_repository
from schemas.topics import CHUNKS, PACKS, STORE_FAULTS


def writer_process(settings, tmp_path, n=1) -> ManagedProcess:
    """A writer over a plain repository: these tests publish plain chunks of their own."""
    plain_repository(settings)
    return ManagedProcess(f"writer{n}", [sys.executable, "-m", "services.writer"],
                          env={**os.environ, **to_environ(settings)}, log_file=tmp_path / f"writer{n}.log")


def make_chunks(count: int, seed: int) -> dict[str, bytes]:
    out = {}
    for i in range(count):
        raw = (f"chunk {seed}-{i} ".encode() * 20000)[: 256 * 1024] if i % 2 else os.urandom(256 * 1024)
        out[digest(raw)] = raw
    return out


async def publish(settings, chunks: dict[str, bytes], wave: str = "0") -> str:
    """Into a wave's chunk topic, created as the snapshotter does; returns the topic."""
    topic = CHUNKS.member(settings.kafka.topic_prefix, "b", wave)
    await create_topic(settings.kafka, CHUNKS, topic)
    async with Bus(settings.kafka, client_id="test") as bus:
        for d, raw in chunks.items():
            codec, stored = compress(raw)
            await bus.publish(CHUNKS, ChunkData(backup_id="b", task_id="t", digest=d, raw_size=len(raw),
                                                codec=codec, data=stored), key=d, member=topic)
    return topic


async def wait_index(index: ChunkIndex, digests, timeout=60.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(d in index for d in digests):
        assert time.monotonic() < deadline, f"{sum(d in index for d in digests)}/{len(digests)} chunks announced"
        await asyncio.sleep(0.2)


async def check_restorable(settings, chunks: dict[str, bytes]) -> ChunkIndex:
    """Every chunk readable back from its pack by a ranged GET, verified; the indexes in S3 say the same."""
    async with open_store(settings.s3) as store:
        stored_index = await ChunkIndex().load(store)
        for d, raw in chunks.items():
            where = stored_index.get(d)
            assert where is not None, "pack index in the store lacks a chunk"
            data = await store.get(where.pack_key, where.offset, where.length)
            assert decompress(where.codec, data, where.raw_size, d, CHUNK_HASH) == raw
    return stored_index


async def test_chunks_become_durable_packs_of_the_configured_size(settings, tmp_path):
    # OLVM_PACK_SIZE below one incompressible chunk: each such chunk fills its pack (with the default, they would
    # share one); a pack is sealed once it holds pack_size bytes, so it never holds more than that and one chunk.
    pack_size = 64 * 1024
    settings = dataclasses.replace(settings, pipeline=dataclasses.replace(settings.pipeline, pack_size=pack_size))
    await ensure_topics(settings.kafka)
    chunks = make_chunks(24, seed=1)
    seen, packs = ChunkIndex(), []

    def on_pack(record):
        packs.append(record)
        seen.add_record(record)

    async with Follower(settings.kafka, PACKS, on_pack, client_id="test-packs"):
        with writer_process(settings, tmp_path) as writer:
            await publish(settings, chunks)
            await wait_index(seen, chunks)
            assert writer.running(), writer.tail()
    await check_restorable(settings, chunks)
    largest = max(e[2] for p in packs for e in p.entries)
    sizes = [sum(e[2] for e in p.entries) for p in packs]
    assert max(sizes) < pack_size + largest, f"pack sizes {sizes}: OLVM_PACK_SIZE {pack_size} not followed"
    filling = sum(e[2] >= pack_size for p in packs for e in p.entries)
    assert len(packs) >= filling, f"{len(packs)} packs for {filling} chunks that each fill one"


async def test_writer_killed_mid_pack_loses_nothing(settings, tmp_path):
    await ensure_topics(settings.kafka)
    first, second = make_chunks(8, seed=2), make_chunks(8, seed=3)
    seen = ChunkIndex()
    async with Follower(settings.kafka, PACKS, seen.add_record, client_id="test-packs"):
        victim = writer_process(settings, tmp_path, 1).start()
        try:
            await publish(settings, first)
            await wait_index(seen, first)
            # Stop the writer hard before it can seal the next pack: its chunks are not committed.
            os.killpg(victim.pid, signal.SIGSTOP)
            await publish(settings, second)
            os.killpg(victim.pid, signal.SIGKILL)
        finally:
            victim.stop()
        with writer_process(settings, tmp_path, 2):
            await wait_index(seen, second, timeout=90)
    await check_restorable(settings, {**first, **second})


def pack_writers(index_records) -> set[str]:
    return {r.writer for r in index_records}


async def test_two_writers_share_the_waves_of_new_chunk_topics(settings, tmp_path):
    """Chunk topics come and go with backup waves: writers started before a topic exists pick it up
    without a rebalance, split its partitions between them, and a deleted topic is simply dropped."""
    await ensure_topics(settings.kafka)
    records = []
    seen = ChunkIndex()

    def on_pack(record):
        records.append(record)
        seen.add_record(record)

    async with Follower(settings.kafka, PACKS, on_pack, client_id="test-packs"):
        with writer_process(settings, tmp_path, 1) as w1, writer_process(settings, tmp_path, 2) as w2:
            await asyncio.sleep(8)  # both in the group: the lease topic's partitions are split
            waves = [make_chunks(24, seed=10 + n) for n in range(3)]
            for n, chunks in enumerate(waves):
                started = time.monotonic()
                topic = await publish(settings, chunks, wave=str(n))
                await wait_index(seen, chunks, timeout=30)
                print(f"wave {n}: stored {time.monotonic() - started:.2f}s after its topic was created")
                await delete_topics(settings.kafka, [topic])
            assert w1.running() and w2.running(), w1.tail() + w2.tail()
    assert len(pack_writers(records)) == 2, f"one writer did all the work: {pack_writers(records)}"
    await check_restorable(settings, {d: raw for chunks in waves for d, raw in chunks.items()})


async def test_a_pack_the_store_refuses_is_reported_and_its_chunks_come_back(settings, tmp_path):
    """The object store goes away mid-backup: the writer says which backup its refused pack served, ends without
    committing those chunks, and once the store is back a restarted writer stores every one of them."""
    await ensure_topics(settings.kafka)
    port = free_port()
    settings = dataclasses.replace(settings, s3=dataclasses.replace(settings.s3,
                                                                    endpoint_url=f"http://127.0.0.1:{port}"))
    before, during = make_chunks(8, seed=20), make_chunks(40, seed=21)  # 10 MiB: parts go up before the seal
    seen, faults = ChunkIndex(), []
    async with Follower(settings.kafka, PACKS, seen.add_record, client_id="test-packs"), \
            Follower(settings.kafka, STORE_FAULTS, faults.append, client_id="test-faults"):
        store = components.moto("127.0.0.1", port, tmp_path / "moto-1.log").start()
        with writer_process(settings, tmp_path, 1) as writer:
            await publish(settings, before, wave="0")
            await wait_index(seen, before)
            store.stop()
            await publish(settings, during, wave="1")
            deadline = time.monotonic() + 90
            while writer.running() or not faults:
                assert time.monotonic() < deadline, f"faults {faults}; writer: {writer.tail()}"
                await asyncio.sleep(0.2)
        fault: StoreFault = faults[0]
        assert fault.backup_ids == ["b"] and fault.chunks > 0 and "object store" in fault.error, fault
        assert "testing" not in fault.error  # the S3 keys
        assert not any(d in seen for d in during), "a chunk was announced from a refused pack"

        with components.moto("127.0.0.1", port, tmp_path / "moto-2.log"), writer_process(settings, tmp_path, 2):
            await wait_index(seen, during, timeout=90)
            await check_restorable(settings, during)


@pytest.mark.processes
async def test_a_full_embedded_store_is_called_full_not_an_internal_error(settings, tmp_path, small_disk):
    """rclone answers a write to a full disk with a bare "500 Internal Error": the writer of the embedded store
    (the stack file says where it keeps its objects) says the disk is full, and how full."""
    await ensure_topics(settings.kafka)
    port = free_port()
    settings = dataclasses.replace(settings, s3=dataclasses.replace(settings.s3,
                                                                    endpoint_url=f"http://127.0.0.1:{port}"))
    run = settings.data_dir / "run"
    run.mkdir(parents=True, exist_ok=True)  # as `up` writes it; this test process stands in for `up`
    (run / "stack.json").write_text(json.dumps({"pid": os.getpid(), "s3": settings.s3.endpoint_url,
                                                "objects": str(small_disk), "processes": {}}))
    chunks = {digest(raw): raw for raw in (os.urandom(256 * 1024) for _ in range(80))}  # 20 MiB, incompressible
    faults: list[StoreFault] = []
    async with Follower(settings.kafka, STORE_FAULTS, faults.append, client_id="test-faults"):
        with components.object_store("127.0.0.1", port, small_disk, tmp_path / "store.log",
                                     access_key=settings.s3.access_key, secret_key=settings.s3.secret_key), \
                writer_process(settings, tmp_path) as writer:
            await publish(settings, chunks)
            deadline = time.monotonic() + 120
            while not faults:
                assert time.monotonic() < deadline, f"no fault; writer: {writer.tail()}"
                await asyncio.sleep(0.2)
    assert "the object store's disk is full (" in faults[0].error and f"MiB free in {small_disk}" in faults[0].error, \
        faults[0].error
