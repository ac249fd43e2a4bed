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
from olvm_backup.kafka import Bus, create_topic, delete_topics
from schemas.topics import CHUNKS

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
