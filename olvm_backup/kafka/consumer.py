"""The consumer loop every service runs: decode, validate, handle, dead-letter, commit.

Offsets are committed only after the side effect (the handler's work, or the
dead letter) is done, so a crash redelivers instead of losing. A record that
cannot be decoded, or whose handling fails for good, goes to the dead-letter
topic with its reason and the loop goes on with the next record.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from schemas import DeadLetter, Record, Topic, decode
from schemas.topics import DEAD_LETTERS

from ..config import KafkaSettings
from ..errors import BackupError, DecodeError
from ..retry import retry
from .bus import Bus

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


class Consumer:
    """A member of consumer group `group` reading `topics`, calling `handler` for each valid record."""

    def __init__(
        self,
        kafka: KafkaSettings,
        bus: Bus,
        topics: Sequence[Topic],
        group: str,
        *,
        client_id: str,
        handler_attempts: int = 3,
        max_poll_interval_ms: int = 300_000,
        session_timeout_ms: int = 10_000,
        max_batch: int = 16,
        fetch_max_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self._kafka = kafka
        self._bus = bus
        self._topics = {t.full_name(kafka.topic_prefix): t for t in topics}
        self._group = group
        self._client_id = client_id
        self._attempts = handler_attempts
        self._max_batch = max_batch
        self._consumer = AIOKafkaConsumer(
            *self._topics,
            bootstrap_servers=kafka.bootstrap_servers,
            group_id=group,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=max_poll_interval_ms,
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(1000, session_timeout_ms // 4),
            fetch_max_bytes=fetch_max_bytes,
            max_partition_fetch_bytes=min(fetch_max_bytes, 16 * 1024 * 1024),
        )
        self._started = False
        self._processed: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        if not self._started:
            await retry(self._consumer.start, what="join consumer group " + self._group, attempts=10, deadline=60,
                        retriable=lambda e: isinstance(e, (KafkaError, OSError)))
            self._started = True

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._consumer.stop()

    async def __aenter__(self) -> "Consumer":
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
            batches = await self._consumer.getmany(timeout_ms=poll_ms, max_records=self._max_batch)
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
        """Commit everything handled so far (offsets of revoked partitions are dropped: their records
        go to the partition's new owner, which is harmless for idempotent side effects)."""
        if not self._processed:
            return
        owned = self._consumer.assignment()
        offsets = {tp: off for tp, off in self._processed.items() if tp in owned}
        self._processed.clear()
        if offsets:
            try:
                await self._consumer.commit(offsets)
            except CommitFailedError as e:
                log.warning("commit lost to a rebalance, records will be redelivered: %s", e)

    async def _process(self, msg, handler: Handler) -> None:
        where = Message(msg.topic, msg.partition, msg.offset, msg.key, msg.timestamp)
        topic = self._topics[msg.topic]
        try:
            record = decode(msg.value, topic.records)
        except DecodeError as e:
            log.warning("dead-lettering %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, e)
            await self._dead_letter(msg, e)
            return
        try:
            await retry(lambda: handler(record, where), what=f"{record.type_name} from {msg.topic}@{msg.offset}",
                        attempts=self._attempts, deadline=120)
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
                    attempts=10, deadline=120)

    async def seek_to_end(self) -> None:
        """Skip history: for consumers that only care about what happens from now on."""
        await self.start()
        await self._consumer.seek_to_end()

    def assignment(self) -> set[TopicPartition]:
        return self._consumer.assignment()
