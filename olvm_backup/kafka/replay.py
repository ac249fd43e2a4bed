"""Reading one topic again from its first record to where it ends now: for a rare look back, not a service loop."""
from __future__ import annotations

import time
from typing import AsyncIterator

from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError

from ..config import KafkaSettings
from .consumer import kafka_consumer, partitions_of, start_consumer
from .tansu.gapless import Gapless

REPLAY_DEADLINE = 60.0  # seconds a replay may take before it is given up


class Replay:
    """`ends` (partition -> end offset) is pinned on entry; iterating yields every record before those ends, each
    partition from offset 0 and without holes (gapless.py)."""

    def __init__(self, kafka: KafkaSettings, name: str, *, client_id: str) -> None:
        self._kafka, self._name, self._client_id = kafka, name, client_id
        self._consumer = kafka_consumer(kafka, group=None, client_id=client_id, fetch_max_bytes=8 * 1024 * 1024)
        self.ends: dict[int, int] = {}

    async def __aenter__(self) -> "Replay":
        await start_consumer(self._consumer, "connect to Kafka")
        try:
            tps = [TopicPartition(self._name, p) for p in sorted(await partitions_of(self._consumer, self._name))]
            self._consumer.assign(tps)
            self.ends = {tp.partition: end for tp, end in (await self._consumer.end_offsets(tps)).items()}
            for tp in tps:
                self._consumer.seek(tp, 0)  # not the broker's "earliest": see gapless.py
        except BaseException:
            await self._consumer.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def committed(self, group: str) -> dict[int, int]:
        """Partition -> offset `group` (named as services name it, without the prefix) has committed on this topic;
        partitions it has not committed on are absent. Asked by a consumer that never joins the group."""
        asking = kafka_consumer(self._kafka, group=group, client_id=self._client_id, fetch_max_bytes=1 << 20)
        await start_consumer(asking, "connect to Kafka")
        try:
            offsets = {p: await asking.committed(TopicPartition(self._name, p)) for p in self.ends}
        finally:
            await asking.stop()
        return {p: offset for p, offset in offsets.items() if offset is not None}

    async def __aiter__(self) -> AsyncIterator:
        fetch = Gapless(self._consumer, "replaying " + self._name, from_commits=False)
        deadline = time.monotonic() + REPLAY_DEADLINE
        left = {p for p, end in self.ends.items() if end > 0}
        while left:
            if time.monotonic() > deadline:
                raise KafkaTimeoutError(f"replaying {self._name}: partitions {sorted(left)} not read to their end "
                                        f"in {REPLAY_DEADLINE:.0f}s")
            for tp, messages in (await fetch.getmany(500, 1000)).items():
                end = self.ends.get(tp.partition, 0)
                for msg in messages:
                    if msg.offset < end:
                        yield msg
                if fetch.positions.get(tp, 0) >= end:
                    left.discard(tp.partition)
