"""Follow a topic from now on without a consumer group: every process sees every record (indexes, results)."""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from aiokafka import TopicPartition

from schemas import Record, Topic, decode

from ..config import KafkaSettings
from ..errors import DecodeError
from .consumer import kafka_consumer

log = logging.getLogger(__name__)


class Follower:
    """`start()` pins the current end of every partition; `run()` then delivers everything after it."""

    def __init__(self, kafka: KafkaSettings, topic: Topic, handler: Callable[[Record], Awaitable[None] | None],
                 *, client_id: str) -> None:
        self._topic = topic
        self._name = topic.full_name(kafka.topic_prefix)
        self._handler = handler
        self._consumer = kafka_consumer(kafka, group=None, client_id=client_id, fetch_max_bytes=8 * 1024 * 1024)
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self._consumer.start()
        partitions = self._consumer.partitions_for_topic(self._name)
        if not partitions:
            await self._consumer._client.force_metadata_update()
            partitions = self._consumer.partitions_for_topic(self._name) or {0}
        tps = [TopicPartition(self._name, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the positions now, so that nothing published after start() is missed
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._run(), name=f"follow {self._name}")

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                for msg in messages:
                    try:
                        record = decode(msg.value, self._topic.records)
                    except DecodeError as e:
                        log.warning("ignoring %s@%d: %s", self._name, msg.offset, e)
                        continue
                    result = self._handler(record)
                    if asyncio.iscoroutine(result):
                        await result

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self._consumer.stop()

    async def __aenter__(self) -> "Follower":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
