"""The consumer loop every service runs: decode, validate, handle, dead-letter, commit.

Offsets are committed only after the side effect (the handler's work, or the
dead letter) is done, so a crash redelivers instead of losing. A record that
cannot be decoded, or whose handling fails for good, goes to the dead-letter
topic with its reason and the loop goes on with the next record.

The loop retries a handler (policy HANDLER) only for a retriable error that no
adapter owns; an adapter's spent budget (GaveUp) or a final error is
dead-lettered at once, so a failing request is tried its adapter's budget of
times, not that times the loop's.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Self, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from schemas import DeadLetter, Record, Topic, decode
from schemas.topics import DEAD_LETTERS

from ..config import KafkaSettings
from ..concurrency import first_failure
from ..errors import BackupError, DecodeError
from ..metrics.lag import LagSampler
from ..retry import DEAD_LETTER, HANDLER, KAFKA_JOIN, retry
from .bus import Bus
from .tansu.gapless import Gapless

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    """Where a record came from: for logs, dead letters and idempotence keys."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    timestamp_ms: int


Handler = Callable[[Record, Message], Awaitable[None]]


class RecordLoop:
    """Decode, validate, handle, dead-letter, commit: the part every consumer shares.

    Subclasses say where records come from (`_poll`), which partitions are still theirs (`_owned`) and
    how offsets are committed (`_commit`).
    """

    def __init__(self, bus: Bus, group: str, *, max_batch: int) -> None:
        self._bus = bus
        self._group = group
        self._max_batch = max_batch
        self._processed: dict[TopicPartition, int] = {}

    async def _poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list]:
        raise NotImplementedError

    def _owned(self) -> set[TopicPartition]:
        raise NotImplementedError

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        raise NotImplementedError

    def _topic_of(self, name: str) -> Topic:
        raise NotImplementedError

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run(self, handler: Handler, *, commit_each: bool = True,
                  after_batch: Callable[[bool], Awaitable[None]] | None = None, poll_ms: int = 1000) -> None:
        """Consume until cancelled.

        With `commit_each` an offset is committed as soon as its record is handled. Without it the caller
        commits with `commit_processed()` when its side effect is durable (the writer, after a pack is
        sealed); `after_batch(empty)` runs after every poll, records or not, for such time-driven work.
        """
        await self.start()
        while True:
            batches = await self._poll(poll_ms, self._max_batch)
            for tp, messages in batches.items():
                for msg in messages:
                    await self._process(msg, handler)
                    self._processed[tp] = msg.offset + 1
                    if commit_each:
                        # A redelivery after a crash repeats at most the record in flight.
                        await self.commit_processed()
            if after_batch is not None:
                await after_batch(not batches)

    async def commit_processed(self) -> None:
        """Commit everything handled so far."""
        await self.commit(self.take_processed())

    def take_processed(self) -> dict[TopicPartition, int]:
        """The offsets handled so far, to be committed later with `commit` (once their side effect is durable);
        they are no longer this loop's to commit."""
        taken, self._processed = self._processed, {}
        return taken

    async def commit(self, processed: dict[TopicPartition, int]) -> None:
        """Commit offsets taken earlier. Offsets of revoked partitions are dropped: their records go to the
        partition's new owner, which is harmless for idempotent side effects."""
        owned = self._owned()
        offsets = {tp: off for tp, off in processed.items() if tp in owned}
        if offsets:
            try:
                await self._commit(offsets)
            except CommitFailedError as e:
                log.warning("commit lost to a rebalance, records will be redelivered: %s", e)

    async def _process(self, msg, handler: Handler) -> None:
        where = Message(msg.topic, msg.partition, msg.offset, msg.key, msg.timestamp)
        topic = self._topic_of(msg.topic)
        try:
            record = decode(msg.value, topic.records)
        except DecodeError as e:
            log.warning("dead-lettering %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, e)
            await self._dead_letter(msg, e)
            return
        async def handle() -> None:
            try:
                await handler(record, where)
            except BaseExceptionGroup as failed:  # a handler's parallel work: judged and told by what failed
                raise first_failure(failed) from None

        try:
            await retry(handle, what=f"{record.type_name} from {msg.topic}@{msg.offset}", policy=HANDLER)
        except asyncio.CancelledError:
            raise
        except BackupError as e:
            log.error("giving up on %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, e)
            await self._dead_letter(msg, e)
        except Exception as e:  # a bug in a handler must not stall the topic behind a poison record
            log.exception("handler crashed on %s[%d]@%d", msg.topic, msg.partition, msg.offset)
            await self._dead_letter(msg, e)

    async def _dead_letter(self, msg, error: BaseException) -> None:
        letter = DeadLetter(
            source_topic=msg.topic, partition=msg.partition, offset=msg.offset, key=msg.key, value=msg.value,
            reason=str(error) or type(error).__name__, error_type=type(error).__name__,
            consumer_group=self._group, at=time.time(),
        )
        await retry(lambda: self._bus.publish(DEAD_LETTERS, letter, key=msg.topic), what="publish dead letter",
                    policy=DEAD_LETTER)


def kafka_consumer(kafka: KafkaSettings, *topics: str, group: str | None, client_id: str, fetch_max_bytes: int,
                   **options) -> AIOKafkaConsumer:
    """An aiokafka consumer as every service configures it: manual commits, from the earliest record. Its group
    gets the topic prefix, as the topics do: installations sharing a cluster never share a group (whose members
    would rebalance together, and whose leader would assign the union of their topics)."""
    return AIOKafkaConsumer(
        *topics, bootstrap_servers=kafka.bootstrap_servers, group_id=group and kafka.topic_prefix + group,
        client_id=client_id,
        enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_bytes=fetch_max_bytes,
        fetch_max_wait_ms=kafka.fetch_wait_ms,
        max_partition_fetch_bytes=min(fetch_max_bytes, 16 * 1024 * 1024), **options)


async def partitions_of(consumer: AIOKafkaConsumer, name: str) -> set[int]:
    """A topic's partitions as the cluster's metadata has them now (asked for again when this client, which
    subscribes to nothing, does not know the topic yet); empty for a topic that does not exist."""
    partitions = consumer.partitions_for_topic(name)
    if not partitions:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(name)
    return set(partitions or ())


async def start_consumer(consumer: AIOKafkaConsumer, what: str) -> None:
    await retry(consumer.start, what=what, policy=KAFKA_JOIN,
                retriable=lambda e: isinstance(e, (KafkaError, OSError)))


class Consumer(RecordLoop):
    """A member of consumer group `group` reading `topics`, calling `handler` for each valid record."""

    def __init__(
        self,
        kafka: KafkaSettings,
        bus: Bus,
        topics: Sequence[Topic],
        group: str,
        *,
        client_id: str,
        max_poll_interval_ms: int = 300_000,
        session_timeout_ms: int = 10_000,
        max_batch: int = 16,
        fetch_max_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        super().__init__(bus, group, max_batch=max_batch)
        self._topics = {t.full_name(kafka.topic_prefix): t for t in topics}
        self._consumer = kafka_consumer(
            kafka, *self._topics, group=group, client_id=client_id, fetch_max_bytes=fetch_max_bytes,
            max_poll_interval_ms=max_poll_interval_ms, session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(1000, session_timeout_ms // 4))
        self._fetch = Gapless(self._consumer, "group " + group, from_commits=True)
        self._lag = LagSampler(self._consumer, group)
        self._started = False

    async def start(self) -> None:
        if not self._started:
            await start_consumer(self._consumer, "join consumer group " + self._group)
            self._started = True
            self._lag.start()

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._lag.stop()
            await self._consumer.stop()

    async def _poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list]:
        return await self._fetch.getmany(timeout_ms, max_records)

    def _owned(self) -> set[TopicPartition]:
        return self._consumer.assignment()

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        await self._consumer.commit(offsets)

    def _topic_of(self, name: str) -> Topic:
        return self._topics[name]

    def assignment(self) -> set[TopicPartition]:
        return self._consumer.assignment()
