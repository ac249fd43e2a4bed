"""Consumer lag, sampled: for each partition a consumer is assigned, the end offset minus the group's committed
offset, every OLVM_METRICS_LAG_INTERVAL seconds while metrics are served.

Asked of the broker (ListOffsets, OffsetFetch) rather than taken from the fetch loop, so a consumer stuck in a
long job (a backup runs inside the snapshotter's poll loop) still shows the requests piling up behind it. A
partition no longer assigned (a rebalance, a wave's topic deleted) loses its series.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from . import CONSUMER_LAG
from . import serving

log = logging.getLogger(__name__)

ASK_TIMEOUT = 5.0  # seconds one sample may wait for the broker (a deleted topic's partition may not answer)
FIRST_LOOKS = 1.0  # seconds between samples until the consumer has partitions


def lag_of(end: dict[TopicPartition, int], committed: dict[TopicPartition, int | None]) -> dict[TopicPartition, int]:
    """Records not yet committed, per partition: a partition with no commit has all of its records ahead of the
    group (our consumers start such a partition at offset 0, kafka/tansu/gapless.py)."""
    return {tp: max(0, offset - (committed.get(tp) or 0)) for tp, offset in end.items()}


class LagSampler:
    """Samples one consumer's lag in a task of its own, from `start` to `stop` (a no-op while metrics are off)."""

    def __init__(self, consumer: AIOKafkaConsumer, group: str) -> None:
        self._consumer = consumer
        self._group = group
        self._shown: set[TopicPartition] = set()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        interval = serving.lag_interval
        if interval is not None and self._task is None:
            self._task = asyncio.create_task(self._run(interval), name=f"consumer lag of {self._group}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._show({})

    async def _run(self, interval: float) -> None:
        shown = False
        while True:
            try:
                lags = await asyncio.wait_for(self.sample(), ASK_TIMEOUT)
                self._show(lags)
                shown = shown or bool(lags)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the broker away for a moment, a topic deleted meanwhile: the next sample
                log.debug("consumer lag of %s not sampled: %s", self._group, e)
            # Until the group first assigns partitions (a join takes seconds), look again soon rather than after
            # a whole interval.
            await asyncio.sleep(interval if shown else min(interval, FIRST_LOOKS))

    async def sample(self) -> dict[TopicPartition, int]:
        assigned = list(self._consumer.assignment())
        if not assigned:
            return {}
        end = await self._consumer.end_offsets(assigned)
        committed = {tp: await self._consumer.committed(tp) for tp in assigned}
        return lag_of(end, committed)

    def _show(self, lags: dict[TopicPartition, int]) -> None:
        for tp in self._shown - set(lags):
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(self._group, tp.topic, str(tp.partition))
        for tp, lag in lags.items():
            CONSUMER_LAG.labels(self._group, tp.topic, str(tp.partition)).set(lag)
        self._shown = set(lags)
