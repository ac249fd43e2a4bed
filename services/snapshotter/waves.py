"""A backup's chunk topics: one per wave of read tasks, deleted as soon as the wave is stored.

Tansu's memory engine keeps every produced byte until its topic is deleted,
and a real Kafka keeps them for the retention time: either way, deleting a
wave's topic once its chunks are in packs is what bounds the broker to about
`waves_in_flight * wave_bytes` of chunks, whatever the size of the disks.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Iterable

from olvm_backup.config import KafkaSettings
from olvm_backup.errors import DecodeError
from olvm_backup.kafka import Bus, Replay, create_topic, delete_topics, offsets_group
from schemas import ChunkData, decode
from schemas.topics import CHUNKS, WRITERS_GROUP

log = logging.getLogger(__name__)


class ChunkTopics:
    """Creates the topics of one backup's waves; whatever is left is deleted on exit, failed or not."""

    def __init__(self, kafka: KafkaSettings, backup_id: str) -> None:
        self._kafka = kafka
        self._backup_id = backup_id
        self._open: list[str] = []

    async def open(self, wave: int) -> str:
        name = CHUNKS.member(self._kafka.topic_prefix, self._backup_id, str(wave))
        await create_topic(self._kafka, CHUNKS, name)
        self._open.append(name)
        return name

    async def close(self, name: str) -> None:
        await delete_topics(self._kafka, [name])
        self._open.remove(name)

    async def resend_lost(self, bus: Bus, name: str, digests: set[str]) -> set[str] | None:
        """Re-send, from the wave's topic itself, the chunks among `digests` that the writers are done with.

        Writers commit a topic's offsets once the packs holding its chunks are durable. When their commits have
        reached the topic's end and a chunk a task result names is still in no stored pack, a consumer skipped a
        record (gapless.py tells how a broker can make that happen): the record is still in the topic, and sent
        again it reaches a writer. Storing a chunk twice is harmless. Returns the digests re-sent, or None while
        the writers have not yet committed the whole topic (nothing is lost then: they are still at it)."""
        async with Replay(self._kafka, name, client_id=f"snapshotter/resend {self._backup_id}") as replay:
            committed = await replay.committed(offsets_group(WRITERS_GROUP))
            if any(committed.get(p, 0) < end for p, end in replay.ends.items()):
                return None
            sent: set[str] = set()
            async for msg in replay:
                try:
                    chunk = decode(msg.value, (ChunkData,))
                except DecodeError:
                    continue
                if chunk.digest in digests and chunk.digest not in sent:
                    await bus.publish_raw(name, msg.value, key=msg.key)
                    sent.add(chunk.digest)
        return sent

    async def __aenter__(self) -> "ChunkTopics":
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._open:
            # Shielded: a cancelled backup must still free the broker.
            await asyncio.shield(delete_topics(self._kafka, list(self._open)))
            self._open.clear()


def backup_of(kafka: KafkaSettings, topic: str) -> str | None:
    """The backup id in a chunk topic's name, or None if the topic is not a chunk topic."""
    if not CHUNKS.is_member(kafka.topic_prefix, topic):
        return None
    return topic[len(kafka.topic_prefix + CHUNKS.stem):].rsplit(".", 1)[0]


async def sweep(kafka: KafkaSettings, bus: Bus, running: Iterable[str]) -> list[str]:
    """Delete the chunk topics of backups that are not running: left by a killed snapshotter (or re-created
    by a client of a broker that creates topics on demand; ours never ask it to, see no_auto_create.py)."""
    live = set(running)
    stale = [t for t in await bus.topics() if (b := backup_of(kafka, t)) is not None and b not in live]
    if stale:
        log.info("deleting %d chunk topic(s) of backups that are over", len(stale))
        await delete_topics(kafka, stale)
    return stale
