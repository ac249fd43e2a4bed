"""Every record reaches every kind of consumer while many producers write one partition at once.

Tansu 0.6 acknowledges such produces before each is readable, and a fetch in between returns the records after
the missing one: a plain aiokafka consumer skips it for good (without olvm_backup/kafka/tansu/gapless.py each test
failed 3 runs of 3, missing 1 to 3 records of 3200). In the product that was a chunk no writer stored, a
task result or a pack the snapshotter never saw: a backup stalled until its stall timeout. These tests put the
load on the real broker and count what each consumer got.
"""
from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import time

from aiokafka import TopicPartition

from olvm_backup.kafka import Bus, Consumer, LeasedConsumer, create_topic, ensure_topics
from olvm_backup.kafka.follow import Follower
from olvm_backup.kafka.tansu.gapless import Gapless, contiguous
from schemas import ChunkData, DeadLetter
from schemas.topics import CHUNKS, DEAD_LETTERS, WRITER_LEASES

PRODUCERS = 8  # processes' worth of producers: one connection each, as readers and writers have
EACH = 400
SIZE = 64 * 1024  # records this big take the broker long enough to write that the race shows
PAUSE = 0.01  # seconds, at most, between two records of a producer


async def _produce_concurrently(kafka_settings, publish) -> None:
    """PRODUCERS producers publishing EACH records each at once; `publish(bus, producer, n)`."""
    async def one(producer: int) -> None:
        async with Bus(kafka_settings, client_id=f"producer-{producer}") as bus:
            for n in range(EACH):
                await publish(bus, producer, n)
                await asyncio.sleep(random.uniform(0, PAUSE))  # consumers keep up: they fetch at the log's end

    await asyncio.gather(*(one(p) for p in range(PRODUCERS)))


async def _until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:  # noqa: ASYNC110 (the consumers under test set no event)
        await asyncio.sleep(0.1)


async def _consume(consumer, handler, **options) -> asyncio.Task:
    async def loop() -> None:
        async with consumer:
            await consumer.run(handler, **options)
    return asyncio.create_task(loop())


async def test_follower_and_group_consumer_see_every_record_of_concurrent_producers(kafka_settings):
    await ensure_topics(kafka_settings, [DEAD_LETTERS])
    followed: list[tuple[str, int]] = []
    grouped: list[tuple[str, int]] = []

    def letter(producer: int, n: int) -> DeadLetter:
        return DeadLetter(source_topic=f"p{producer}", partition=0, offset=n, key=None, value=os.urandom(SIZE),
                          reason="load", error_type="Load", consumer_group="test", at=time.time())

    async with Bus(kafka_settings, client_id="test") as bus:
        async with Follower(kafka_settings, DEAD_LETTERS,
                            lambda r: followed.append((r.source_topic, r.offset)), client_id="follower"):
            async def on_letter(record: DeadLetter, where) -> None:
                grouped.append((record.source_topic, record.offset))

            group = await _consume(Consumer(kafka_settings, bus, [DEAD_LETTERS], "test-group", client_id="member"),
                                   on_letter)
            try:
                # Both consumers fetching before the load starts (a group member takes seconds to join).
                await bus.publish(DEAD_LETTERS, letter(-1, 0), key="one key")
                await _until(lambda: followed and grouped)
                await _produce_concurrently(
                    kafka_settings, lambda b, p, n: b.publish(DEAD_LETTERS, letter(p, n), key="one key"))
                total = 1 + PRODUCERS * EACH
                await _until(lambda: len(followed) >= total and len(grouped) >= total)
            finally:
                group.cancel()
                await asyncio.gather(group, return_exceptions=True)

    sent = {(f"p{p}", n) for p in range(-1, PRODUCERS) for n in range(EACH if p >= 0 else 1)}
    assert sent - set(followed) == set(), f"the follower missed {len(sent - set(followed))} of {len(sent)}"
    assert sent - set(grouped) == set(), f"the group member missed {len(sent - set(grouped))} of {len(sent)}"
    assert len(followed) == len(sent), "the follower saw a record twice"


async def test_leased_consumer_sees_every_chunk_of_concurrent_producers(kafka_settings):
    """The writers' path: readers publish a wave's chunks side by side, keyed by digest (here to one partition)."""
    kafka_settings = dataclasses.replace(kafka_settings, partitions=1)
    await ensure_topics(kafka_settings, [WRITER_LEASES])
    wave = CHUNKS.member(kafka_settings.topic_prefix, "b1", "0")
    await create_topic(kafka_settings, CHUNKS, wave)
    got: set[str] = set()

    def chunk(producer: int, n: int) -> ChunkData:
        return ChunkData(backup_id="b1", task_id=f"t{producer}", digest=f"{producer:032x}{n:032x}",
                         raw_size=SIZE, codec="none", data=os.urandom(SIZE))

    async with Bus(kafka_settings, client_id="test") as bus:
        async def on_chunk(record: ChunkData, where) -> None:
            got.add(record.digest)

        writer = await _consume(LeasedConsumer(kafka_settings, bus, CHUNKS, WRITER_LEASES, "test-writers",
                                               client_id="writer"), on_chunk, poll_ms=100)
        try:
            await bus.publish(CHUNKS, c := chunk(99, 0), key=c.digest, member=wave)
            await _until(lambda: got)  # the writer holds its lease and fetches
            await _produce_concurrently(kafka_settings, lambda b, p, n: b.publish(
                CHUNKS, c := chunk(p, n), key=c.digest, member=wave))
            await _until(lambda: len(got) >= 1 + PRODUCERS * EACH)
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    sent = {f"{p:032x}{n:032x}" for p in range(PRODUCERS) for n in range(EACH)}
    assert sent - got == set(), f"the writers' consumer missed {len(sent - got)} of {len(sent)} chunks"


def test_contiguous_stops_at_the_first_hole():
    class Msg:
        def __init__(self, offset: int) -> None:
            self.offset = offset

    def offsets(messages) -> list[int]:
        return [m.offset for m in messages]

    assert offsets(contiguous([Msg(o) for o in (5, 6, 8, 9)], 5)) == [5, 6]
    assert offsets(contiguous([Msg(o) for o in (6, 7)], 5)) == []  # the very first is missing
    assert offsets(contiguous([Msg(o) for o in (3, 4, 5, 6)], 5)) == [5, 6]  # already seen: dropped


async def test_a_partition_handed_over_within_a_poll_starts_at_its_commit():
    """A rebalance inside aiokafka's getmany can hand over a partition together with its first records, before
    Gapless learned where it starts. If those records begin after a hole, they are fetched again from the group's
    committed offset. The broker's race cannot be produced on demand, so the consumer here is a stand-in for
    aiokafka's (the calls Gapless makes, answering as aiokafka does)."""
    tp = TopicPartition("t", 0)

    class Msg:
        def __init__(self, offset: int) -> None:
            self.offset = offset

    class HandedOver:
        def __init__(self) -> None:
            self.fetches = [[Msg(3), Msg(4)], [Msg(2), Msg(3), Msg(4)]]  # record 2 not readable at first
            self.assigned: set = set()
            self.seeks: list[int] = []

        def assignment(self) -> set:
            return self.assigned

        async def getmany(self, timeout_ms: int, max_records: int) -> dict:
            self.assigned = {tp}  # the rebalance happens inside this call
            return {tp: self.fetches.pop(0)} if self.fetches else {}

        async def committed(self, partition) -> int:
            return 2

        def seek(self, partition, offset: int) -> None:
            self.seeks.append(offset)

    consumer = HandedOver()
    fetch = Gapless(consumer, "test", from_commits=True)
    assert await fetch.getmany(100, 10) == {}, "records after a hole at the partition's start are not taken"
    assert consumer.seeks[0] == 2, "fetched again from the committed offset"
    again = await fetch.getmany(100, 10)
    assert [m.offset for m in again[tp]] == [2, 3, 4]
