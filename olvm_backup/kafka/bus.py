"""The producer side: typed records in, acknowledged writes out."""
from __future__ import annotations

import itertools
import logging
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, UnknownTopicOrPartitionError
from aiokafka.partitioner import DefaultPartitioner

from schemas import Record, Topic, encode

from ..config import KafkaSettings
from ..errors import BackupError, RetriableError
from ..retry import KAFKA_CONNECT, retry

log = logging.getLogger(__name__)

MAX_RECORD_BYTES = 8 * 1024 * 1024  # a compressed chunk is at most ~4 MiB; leave room for the envelope


class PublishError(RetriableError):
    template = "cannot publish to {topic}: {reason}"


class TopicGone(BackupError):
    """The topic does not exist (any more): a wave topic deleted because its wave or backup is over."""

    template = "topic {topic} does not exist"


class TakeTurns:
    """Keyed records go by the key's hash (Kafka's default); records without a key take the partitions in turn
    rather than at random, so consecutive work items (a backup's read tasks) go to different consumers of a group
    (whose round-robin assignor deals partitions out in turn too) instead of piling up on one while another idles."""

    def __init__(self) -> None:
        self._turn = itertools.count()
        self._by_key = DefaultPartitioner()

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return all_partitions[next(self._turn) % len(all_partitions)]
        return self._by_key(key, all_partitions, available)


class Bus:
    """One producer per process. `publish` returns once the broker acknowledged the record (acks=all)."""

    def __init__(self, kafka: KafkaSettings, client_id: str) -> None:
        self._kafka = kafka
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._used: set[str] = set()  # topics published to: the producer keeps their metadata fresh

    async def start(self) -> "Bus":
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._kafka.bootstrap_servers,
                client_id=self._client_id,
                acks="all",
                enable_idempotence=False,  # Tansu 0.6 does not implement idempotent producers
                max_request_size=MAX_RECORD_BYTES,
                linger_ms=2,
                request_timeout_ms=30_000,
                partitioner=TakeTurns(),
            )
            await retry(producer.start, what="connect to Kafka", policy=KAFKA_CONNECT,
                        retriable=lambda e: isinstance(e, KafkaError) or isinstance(e, OSError))
            self._producer = producer
        return self

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def __aenter__(self) -> "Bus":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def topic_name(self, topic: Topic) -> str:
        return topic.full_name(self._kafka.topic_prefix)

    async def publish(self, topic: Topic, record: Record, key: str | bytes | None = None, *,
                      member: str | None = None) -> None:
        """`member`: the concrete topic, for a family topic (a backup wave's chunk topic)."""
        if type(record) not in topic.records:
            raise TypeError(f"{record.type_name} does not belong on topic {topic.name}")
        if topic.family and (member is None or not topic.is_member(self._kafka.topic_prefix, member)):
            raise ValueError(f"{topic.name} is a family of topics: name the member ({member!r} is not one)")
        await self.publish_raw(member or self.topic_name(topic), encode(record), key)

    async def topics(self) -> set[str]:
        """The topics the cluster has now (a fresh metadata request, which creates nothing)."""
        if self._producer is None:
            raise RuntimeError("Bus not started")
        return set((await self._producer.client.fetch_all_metadata()).topics())

    def forget(self, topic_name: str) -> None:
        """Stop tracking a topic we are done with (a wave's chunk topic, deleted soon): the producer would
        otherwise ask for its metadata, and log its absence, for as long as the process lives."""
        self._used.discard(topic_name)
        if self._producer is not None:
            self._producer.client.set_topics(self._used)

    async def publish_raw(self, topic_name: str, value: bytes | None, key: str | bytes | None = None) -> None:
        """Send bytes as they are: for dead letters and for tests that need a malformed record."""
        if self._producer is None:
            raise RuntimeError("Bus not started")
        key_bytes = key.encode() if isinstance(key, str) else key
        self._used.add(topic_name)
        try:
            await self._producer.send_and_wait(topic_name, value=value, key=key_bytes)
        except UnknownTopicOrPartitionError:
            raise TopicGone("", topic=topic_name) from None
        except KafkaError as e:
            raise PublishError(str(e) or type(e).__name__, topic=topic_name) from e
