"""Reading every offset of a partition, even from a broker that shows a later record before an earlier one.

Tansu 0.6 acknowledges concurrent produces to one partition before each is
readable, and a fetch meanwhile returns the records after the missing one: a
plain consumer moves past it and never sees it (a standalone probe, 8 producers
and one consumer on one partition: 21 of 8000 offsets skipped). Its "earliest
offset" of a fresh partition can likewise be 1 while record 0 is still being
written (3 of 40 probes), so a consumer reset to "earliest" skips record 0.

Our topics are neither compacted nor transactional, so on any Kafka their
offsets are dense and start at 0 (unless retention dropped the oldest). A hole
in what a fetch returns means "not readable yet": the partition is fetched again
from the hole until it fills, or until GAP_PATIENCE says the record is gone for
good (then the hole is logged and passed). A group's partition without a
committed offset starts at 0, not where the broker says the log begins (where
retention dropped 0, that fetch fails and the consumer's reset policy applies).
"""
from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError

log = logging.getLogger(__name__)

GAP_PATIENCE = 10.0  # seconds a hole may stay before its offsets are taken as gone for good
REFETCH_PAUSE = 0.005  # seconds between fetches of a hole: the missing record is being written
POSITION_WAIT = 1.0  # seconds to learn where a newly assigned partition starts (milliseconds, unless its topic is gone)


def contiguous(messages: list, expected: int) -> list:
    """The messages from offset `expected` on, up to the first hole (earlier offsets are dropped)."""
    out = []
    for msg in messages:
        if msg.offset < expected:
            continue
        if msg.offset != expected:
            break
        out.append(msg)
        expected += 1
    return out


class Gapless:
    """`getmany` of one consumer, returning each partition's records without holes.

    With `from_commits` (a group's consumer) a newly assigned partition starts at its committed offset, or 0;
    without, where the consumer's position is (a follower's, sought to the end). Owners that assign partitions
    by hand say where the ones they keep go on from with `resume`."""

    def __init__(self, consumer: AIOKafkaConsumer, what: str, *, from_commits: bool) -> None:
        self._consumer = consumer
        self._what = what
        self._from_commits = from_commits
        self._next: dict[TopicPartition, int] = {}  # offset each partition must go on from
        self._holes: dict[tuple[TopicPartition, int], float] = {}  # (partition, offset) -> first seen missing

    @property
    def positions(self) -> dict[TopicPartition, int]:
        """The next offset of every partition that records were returned from, or whose start is known."""
        return dict(self._next)

    def resume(self, positions: dict[TopicPartition, int]) -> None:
        """After an `assign`: these partitions go on from these offsets, the others start afresh."""
        for tp, offset in positions.items():
            self._consumer.seek(tp, offset)
        self._next = dict(positions)
        self._holes.clear()

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list]:
        owned = self._consumer.assignment()
        self._next = {tp: off for tp, off in self._next.items() if tp in owned}
        await self._learn_starts(owned - self._next.keys())
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        out: dict[TopicPartition, list] = {}
        refetch = False
        for tp, messages in batches.items():
            expected = self._next.get(tp)
            if expected is None:
                # Assigned within this very poll (a rebalance): where it starts is learned now, before its records
                # count (they may begin after a hole, like any fetch).
                expected = await self._start_within_poll(tp)
            if expected is None:
                # A follower's partition it did not pin, or a start that took too long to learn: taken as it came.
                kept = messages
            else:
                kept = contiguous(messages, expected)
                if len(kept) < len(messages) and messages[-1].offset >= expected:
                    hole = expected + len(kept)
                    first_seen = self._holes.setdefault((tp, hole), time.monotonic())
                    if time.monotonic() - first_seen < GAP_PATIENCE:
                        self._consumer.seek(tp, hole)  # fetch the rest again, from the hole
                        refetch = True
                    else:
                        upto = next(m.offset for m in messages if m.offset > hole)
                        log.warning("%s: %s offsets %d-%d never became readable in %.0fs; going on without them",
                                    self._what, f"{tp.topic}[{tp.partition}]", hole, upto - 1, GAP_PATIENCE)
                        kept = [m for m in messages if m.offset >= expected]
                        del self._holes[(tp, hole)]
            if kept:
                out[tp] = kept
                self._holes.pop((tp, kept[0].offset), None)  # a hole waited for, filled
                self._next[tp] = kept[-1].offset + 1
        if refetch:
            await asyncio.sleep(REFETCH_PAUSE)
        return out

    async def _learn_starts(self, partitions: set[TopicPartition]) -> None:
        """Where each newly assigned partition starts (its committed offset, or where the reset policy puts it)."""
        if not partitions:
            return
        asked = {tp: asyncio.ensure_future(self._start_of(tp)) for tp in partitions}
        try:
            await asyncio.wait(asked.values(), timeout=POSITION_WAIT)
        finally:
            for future in asked.values():
                future.cancel()  # those not done: their partition is left unknown for this poll
        for tp, future in asked.items():
            if future.cancelled():
                continue
            if (error := future.exception()) is None:
                self._next[tp] = future.result()
            elif not isinstance(error, IllegalStateError):  # IllegalStateError: revoked meanwhile
                raise error

    async def _start_within_poll(self, tp: TopicPartition) -> int | None:
        """A group's partition that came with records before its start was learned: its committed offset or 0, asked
        without moving the consumer (its records are checked against it like any fetch); None if not learnable."""
        if not self._from_commits:
            return None
        try:
            return await asyncio.wait_for(self._committed_start(tp), POSITION_WAIT)
        except (asyncio.TimeoutError, IllegalStateError):
            return None

    async def _start_of(self, tp: TopicPartition) -> int:
        if not self._from_commits:
            return await self._consumer.position(tp)
        start = await self._committed_start(tp)
        self._consumer.seek(tp, start)
        return start

    async def _committed_start(self, tp: TopicPartition) -> int:
        """Where a group's partition starts: its committed offset, or 0 (not the broker's "earliest": see the
        module's docstring)."""
        start = await self._consumer.committed(tp)
        return 0 if start is None else start
