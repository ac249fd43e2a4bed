"""Leadership through the broker: the scheduler group's member assigned the one partition of `scheduler.leader`
(a topic never written) is the active scheduler.

Kafka's group protocol does the election: a stopped instance leaves the group at once, a killed or cut-off one is
dropped after the group's session timeout (OLVM_SCHEDULER_SESSION_TIMEOUT_MS), and either way the partition goes
to another member. The leader's work runs as a task while the partition is held and is cancelled, and awaited,
as soon as it is revoked. A deposed leader that has not heard yet can overlap its successor for up to a session
timeout; the requests either publishes for a slot carry the same ids, so the snapshotter runs each once.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener

from olvm_backup.config import KafkaSettings
from olvm_backup.kafka.consumer import kafka_consumer, start_consumer
from schemas.topics import SCHEDULER_GROUP, SCHEDULER_LEADER

log = logging.getLogger(__name__)

POLL_MS = 500  # how often the membership is polled (aiokafka drops a member that stops polling)

Lead = Callable[[], Awaitable[None]]


class Leadership(ConsumerRebalanceListener):
    def __init__(self, kafka: KafkaSettings, *, client_id: str, session_timeout_ms: int,
                 group: str = SCHEDULER_GROUP) -> None:
        self._name = SCHEDULER_LEADER.full_name(kafka.topic_prefix)
        self._consumer = kafka_consumer(
            kafka, group=group, client_id=client_id, fetch_max_bytes=1 << 16,
            session_timeout_ms=session_timeout_ms, heartbeat_interval_ms=max(300, session_timeout_ms // 4),
            max_poll_interval_ms=max(10_000, 4 * session_timeout_ms))
        self._consumer.subscribe([self._name], listener=self)
        self._lead: Lead | None = None
        self._task: asyncio.Task | None = None

    @property
    def leading(self) -> bool:
        return TopicPartition(self._name, 0) in self._consumer.assignment()

    async def run(self, lead: Lead) -> None:
        """Until cancelled: `lead()` runs while this member leads. Its failure ends `run` (and the membership,
        so another instance takes over)."""
        self._lead = lead
        await start_consumer(self._consumer, "join the scheduler group")
        try:
            while True:
                await self._consumer.getmany(timeout_ms=POLL_MS)  # nothing arrives: this keeps the membership
                task = self._task
                if task is not None and task.done():
                    self._task = None
                    task.result()  # the leader's failure is the service's
        finally:
            await self._abdicate()
            await self._consumer.stop()  # leaves the group: another instance leads without waiting out a session

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if TopicPartition(self._name, 0) in assigned and self._task is None and self._lead is not None:
            log.info("this instance is now the active scheduler")
            self._task = asyncio.create_task(self._lead(), name="scheduler-leader")

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if self._task is not None:
            log.info("leadership lost: scheduling stops")
            await self._abdicate()

    async def _abdicate(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
