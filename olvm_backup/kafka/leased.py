"""Consuming a family of short-lived topics (one chunk topic per backup wave) as a group, without rebalances.

Tansu frees a topic's bytes only when the topic is deleted, so chunks travel in
topics that live for one wave of one backup. A group subscription that picks up
each new topic would cost a rebalance per topic (5-9 s on Tansu), so instead
the group subscribes once, to the fixed lease topic: holding partition p of it
means consuming partition p of every topic of the family. Members list the
topics every REFRESH seconds and assign those partitions to a second consumer,
assigned by hand, whose offsets are committed under `<group>.offsets`.
"""
from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError

from schemas import Topic

from ..config import KafkaSettings
from ..metrics.lag import LagSampler
from .bus import Bus
from .consumer import RecordLoop, kafka_consumer, start_consumer
from .tansu.gapless import Gapless

log = logging.getLogger(__name__)

REFRESH = 0.25  # seconds between looks for new or deleted topics of the family
COMMIT_PATIENCE = 1.0  # seconds before a commit is suspected of naming a deleted topic (it takes milliseconds)
COMMIT_DEADLINE = 120.0  # seconds a commit may keep failing with every topic present before the loop gives up


def offsets_group(group: str) -> str:
    """The group a leased consumer commits its family topics' offsets under."""
    return group + ".offsets"


class LeasedConsumer(RecordLoop):
    def __init__(self, kafka: KafkaSettings, bus: Bus, family: Topic, leases: Topic, group: str, *,
                 client_id: str, max_batch: int = 16,
                 fetch_max_bytes: int = 16 * 1024 * 1024, session_timeout_ms: int = 10_000) -> None:
        super().__init__(bus, group, max_batch=max_batch)
        self._prefix = kafka.topic_prefix
        self._family = family
        self._leases = kafka_consumer(
            kafka, leases.full_name(kafka.topic_prefix), group=group, client_id=client_id + "/leases",
            fetch_max_bytes=1 << 20, session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(1000, session_timeout_ms // 4))
        self._data = kafka_consumer(kafka, group=offsets_group(group), client_id=client_id,
                                    fetch_max_bytes=fetch_max_bytes)
        self._fetch = Gapless(self._data, "group " + offsets_group(group), from_commits=True)
        self._lag = LagSampler(self._data, group)  # the family's partitions, whose offsets are the group's work
        self._refreshed = 0.0
        self._started = False

    async def start(self) -> None:
        if not self._started:
            await start_consumer(self._data, "connect to Kafka")
            try:
                await start_consumer(self._leases, "join consumer group " + self._group)
            except BaseException:
                await self._data.stop()
                raise
            self._started = True
            self._lag.start()

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._lag.stop()
            try:
                await self._leases.stop()
            finally:
                await self._data.stop()

    async def _poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list]:
        await self._leases.getmany(timeout_ms=0)  # nothing arrives there: this keeps the membership alive
        if time.monotonic() - self._refreshed >= REFRESH:
            await self._reassign()
        wait_ms = min(timeout_ms, int(REFRESH * 1000))
        if not self._data.assignment():
            await asyncio.sleep(wait_ms / 1000)
            return {}
        return await self._fetch.getmany(wait_ms, max_records)

    async def _reassign(self) -> None:
        self._refreshed = time.monotonic()
        names = {n for n in await self._data.topics() if self._family.is_member(self._prefix, n)}
        leased = {tp.partition for tp in self._leases.assignment()}
        wanted = {TopicPartition(n, p) for n in names for p in leased}
        current = self._data.assignment()
        if wanted == current:
            return
        # assign() forgets every position; partitions held all along go on where they were instead of
        # re-reading from the last commit (which would put their chunks twice into the open pack).
        kept = {tp: off for tp, off in self._fetch.positions.items() if tp in current and tp in wanted}
        self._data.assign(list(wanted))
        self._fetch.resume(kept)

    def _owned(self) -> set[TopicPartition]:
        return set(self._data.assignment())

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        # The snapshotter deletes a wave's topic once its chunks are announced in packs, which can be just
        # before we commit; aiokafka retries a commit naming a missing topic forever. Those offsets no longer
        # matter (nothing will read that topic again), so they are dropped and the rest committed.
        deadline = time.monotonic() + COMMIT_DEADLINE
        while offsets:
            try:
                await asyncio.wait_for(self._data.commit(offsets), COMMIT_PATIENCE)
                return
            except asyncio.TimeoutError:
                existing = await self._data.topics()
                gone = {tp.topic for tp in offsets if tp.topic not in existing}
                if gone:
                    log.info("not committing offsets of deleted topics %s", ", ".join(sorted(gone)))
                    offsets = {tp: off for tp, off in offsets.items() if tp.topic not in gone}
                elif time.monotonic() > deadline:
                    raise KafkaTimeoutError(f"offset commit for {self._group}.offsets still failing") from None

    def _topic_of(self, name: str) -> Topic:
        return self._family
