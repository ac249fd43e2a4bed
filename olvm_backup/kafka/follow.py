"""Follow a topic from now on without a consumer group: every process sees every record (indexes, results)."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from schemas import Record, Topic, decode

from ..config import KafkaSettings
from ..errors import DecodeError
from .consumer import kafka_consumer, partitions_of
from .tansu.gapless import Gapless

log = logging.getLogger(__name__)

TELL_EVERY = 30.0  # seconds between two log lines about the same broker outage


class Follower:
    """`start()` pins the current end of every partition; `run()` then delivers everything after it."""

    def __init__(self, kafka: KafkaSettings, topic: Topic, handler: Callable[[Record], Awaitable[None] | None],
                 *, client_id: str) -> None:
        self._topic = topic
        self._name = topic.full_name(kafka.topic_prefix)
        self._handler = handler
        self._consumer = kafka_consumer(kafka, group=None, client_id=client_id, fetch_max_bytes=8 * 1024 * 1024)
        self._fetch = Gapless(self._consumer, "following " + self._name, from_commits=False)
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self._consumer.start()
        partitions = await partitions_of(self._consumer, self._name) or {0}
        tps = [TopicPartition(self._name, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the positions now, so that nothing published after start() is missed
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._run(), name=f"follow {self._name}")

    async def _run(self) -> None:
        # Whoever follows (a snapshotter waiting on results and packs) stalls if this task ends: it does not,
        # short of cancellation. A broker error is waited out; a record its handler fails on is logged and passed.
        told = 0.0  # when a broker error was last logged: one line per TELL_EVERY seconds, not one a second
        while True:
            try:
                batches = await self._fetch.getmany(500, 10_000)
            except KafkaError as e:
                if time.monotonic() - told >= TELL_EVERY:
                    told = time.monotonic()
                    log.warning("following %s: %s; trying again", self._name, e)
                await asyncio.sleep(1.0)
                continue
            told = 0.0
            for messages in batches.values():
                for msg in messages:
                    try:
                        record = decode(msg.value, self._topic.records)
                    except DecodeError as e:
                        log.warning("ignoring %s@%d: %s", self._name, msg.offset, e)
                        continue
                    try:
                        result = self._handler(record)
                        if asyncio.iscoroutine(result):
                            await result
                    except Exception:
                        log.exception("following %s: handling the record at offset %d failed", self._name, msg.offset)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        try:
            await self._consumer.stop()
        except asyncio.CancelledError:
            # aiokafka's fetcher, closing, awaits a fetch it has just cancelled (one backing off from a broker that
            # is gone) and so raises that cancellation: not ours, unless this task is being cancelled too.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            await self._consumer._client.close()  # what stop() had still to do

    async def __aenter__(self) -> "Follower":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
