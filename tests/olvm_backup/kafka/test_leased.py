"""The leased consumer against the real broker: a chunk topic deleted between handling and commit."""
from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition

from olvm_backup.kafka import Bus, LeasedConsumer, create_topic, delete_topics, ensure_topics
from schemas import ChunkData
from schemas.topics import CHUNKS, WRITER_LEASES


def _chunk(n: int) -> ChunkData:
    return ChunkData(backup_id="b1", task_id=f"t{n}", digest=f"{n:064x}", raw_size=4, codec="none", data=b"data")


async def test_commit_survives_a_chunk_topic_deleted_before_it(kafka_settings):
    """The snapshotter deletes a wave's topic as soon as the pack holding its chunks is announced, which can be
    before the writer commits its offsets. That commit must not wait forever on the missing topic (it once
    did, inside aiokafka's retry loop, and stalled every backup behind it), and the live topic's offsets must
    still be committed."""
    prefix = kafka_settings.topic_prefix
    await ensure_topics(kafka_settings, [WRITER_LEASES])
    doomed, live = CHUNKS.member(prefix, "b1", "0"), CHUNKS.member(prefix, "b1", "1")
    for name in (doomed, live):
        await create_topic(kafka_settings, CHUNKS, name)

    got: list[str] = []
    async with Bus(kafka_settings, client_id="test-producer") as bus:
        for n, name in enumerate((doomed, live)):
            await bus.publish(CHUNKS, _chunk(n), key=str(n), member=name)
        consumer = LeasedConsumer(kafka_settings, bus, CHUNKS, WRITER_LEASES, "test-writers", client_id="t")
        async with consumer:
            async def handle(chunk, where) -> None:
                got.append(where.topic)

            async def drain() -> None:
                await consumer.run(handle, commit_each=False, poll_ms=100)

            runner = asyncio.create_task(drain())
            try:
                for _ in range(300):
                    if len(got) == 2:
                        break
                    await asyncio.sleep(0.1)
            finally:
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)
            assert sorted(got) == sorted([doomed, live])

            await delete_topics(kafka_settings, [doomed])
            await asyncio.wait_for(consumer.commit_processed(), timeout=20)

    # The live topic's one record is committed under the group's offsets (any partition it landed in); groups,
    # like topics, carry the installation's prefix.
    reader = AIOKafkaConsumer(bootstrap_servers=kafka_settings.bootstrap_servers,
                              group_id=kafka_settings.topic_prefix + "test-writers.offsets",
                              enable_auto_commit=False)
    await reader.start()
    try:
        offsets = [await reader.committed(TopicPartition(live, p)) for p in range(kafka_settings.partitions)]
    finally:
        await reader.stop()
    assert sum(o or 0 for o in offsets) == 1, offsets
