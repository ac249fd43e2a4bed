"""In-process stand-ins for the broker, for the fast tier: a bus that keeps what is published, and a record loop
fed from a list. The product's handlers and the product's RecordLoop run unchanged on them; only where records
come from and where offsets go is ours. The object store's twin is in the product (olvm_backup/objectstore/memory.py),
held to the S3 conformance suite.

Records go through the real envelope both ways (encode on publish, decode in the loop), so a record that would not
survive the wire does not survive here either.
"""
from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Sequence

from aiokafka import TopicPartition

from olvm_backup.kafka.bus import TopicGone
from olvm_backup.kafka.consumer import RecordLoop
from schemas import Record, Topic, decode, encode

PREFIX = "t."


@dataclass(frozen=True)
class Sent:
    topic: str
    key: bytes | None
    value: bytes | None


class MemoryBus:
    """The Bus's publishing face. `published[topic name]` is every record sent there, in order. Topics exist once
    created (`create`) or published to, unless `strict`: then publishing to a topic not created raises TopicGone,
    as the broker does once the auto-create patch is in (a deleted wave topic)."""

    def __init__(self, prefix: str = PREFIX, *, strict: bool = False) -> None:
        self.prefix = prefix
        self.strict = strict
        self.published: dict[str, list[Sent]] = defaultdict(list)
        self._topics: set[str] = set()
        self.before: Callable[[str], Awaitable[None]] | None = None  # fault hook: may raise a publish's failure

    async def start(self) -> "MemoryBus":
        return self

    async def stop(self) -> None:
        pass

    async def __aenter__(self) -> "MemoryBus":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        pass

    def create(self, name: str) -> str:
        self._topics.add(name)
        return name

    def delete(self, name: str) -> None:
        self._topics.discard(name)

    def topic_name(self, topic: Topic) -> str:
        return topic.full_name(self.prefix)

    async def topics(self) -> set[str]:
        return set(self._topics)

    def forget(self, topic_name: str) -> None:
        pass

    async def publish(self, topic: Topic, record: Record, key: str | bytes | None = None, *,
                      member: str | None = None) -> None:
        # The same refusals as Bus.publish: a record on the wrong topic, a family topic without its member.
        if type(record) not in topic.records:
            raise TypeError(f"{record.type_name} does not belong on topic {topic.name}")
        if topic.family and (member is None or not topic.is_member(self.prefix, member)):
            raise ValueError(f"{topic.name} is a family of topics: name the member ({member!r} is not one)")
        await self.publish_raw(member or self.topic_name(topic), encode(record), key)

    async def publish_raw(self, topic_name: str, value: bytes | None, key: str | bytes | None = None) -> None:
        if self.before is not None:
            await self.before(topic_name)
        if self.strict and topic_name not in self._topics:
            raise TopicGone("", topic=topic_name)
        self._topics.add(topic_name)
        self.published[topic_name].append(Sent(topic_name, key.encode() if isinstance(key, str) else key, value))
        await asyncio.sleep(0)

    def records(self, topic: Topic | str) -> list[Record]:
        """What a consumer of the topic would decode, in order."""
        name = topic if isinstance(topic, str) else self.topic_name(topic)
        return [decode(sent.value) for sent in self.published.get(name, [])]


@dataclass(frozen=True)
class FedRecord:
    """What the loop reads of an aiokafka ConsumerRecord."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int


class Drained(Exception):
    """The feed is empty and the idle polls are spent: ends `ListLoop.run`, which otherwise runs until cancelled."""


class ListLoop(RecordLoop):
    """The product's record loop over records fed from a list. `committed` is the last offset committed per
    partition (the next to read, as Kafka has it), `commits` every commit in order. After the feed runs dry the
    loop polls `idle_polls` more times (empty polls: what time-driven `after_batch` work runs on), then ends with
    Drained."""

    def __init__(self, bus: MemoryBus, topics: Sequence[Topic], *, group: str = "test", max_batch: int = 16,
                 idle_polls: int = 2) -> None:
        super().__init__(bus, group, max_batch=max_batch)
        self._prefix = bus.prefix
        self._topics = topics
        self._feed: list[FedRecord] = []
        self._next: dict[TopicPartition, int] = defaultdict(int)
        self.idle_polls = idle_polls
        self._idle = 0
        self.revoked: set[TopicPartition] = set()  # partitions taken away, as a rebalance would
        self.committed: dict[TopicPartition, int] = {}
        self.commits: list[dict[TopicPartition, int]] = []

    def feed(self, topic_name: str, record: Record | bytes | None, key: bytes | None = None,
             partition: int = 0) -> TopicPartition:
        tp = TopicPartition(topic_name, partition)
        value = encode(record) if isinstance(record, Record) else record
        self._feed.append(FedRecord(topic_name, partition, self._next[tp], key, value, int(time.time() * 1000)))
        self._next[tp] += 1
        self._idle = 0
        return tp

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def _poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list]:
        await asyncio.sleep(0)
        if not self._feed:
            self._idle += 1
            if self._idle > self.idle_polls:
                raise Drained()
            return {}
        batch, self._feed = self._feed[:max_records], self._feed[max_records:]
        out: dict[TopicPartition, list] = defaultdict(list)
        for rec in batch:
            out[TopicPartition(rec.topic, rec.partition)].append(rec)
        return dict(out)

    def _owned(self) -> set[TopicPartition]:
        return set(self._next) - self.revoked

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            assert offset > self.committed.get(tp, 0), f"{tp}: commit {offset} after {self.committed.get(tp)}"
        self.committed.update(offsets)
        self.commits.append(dict(offsets))

    def _topic_of(self, name: str) -> Topic:
        for topic in self._topics:
            if topic.is_member(self._prefix, name) or topic.full_name(self._prefix) == name:
                return topic
        raise KeyError(name)


async def run_until_drained(loop: ListLoop, handler, **options) -> None:
    try:
        await loop.run(handler, **options)
    except Drained:
        pass
