"""Topic administration: create what the contract declares, delete what a backup no longer needs."""
from __future__ import annotations

import logging
from typing import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from schemas import ALL_TOPICS, Topic

from ..config import KafkaSettings
from ..retry import KAFKA_CONNECT, retry

log = logging.getLogger(__name__)


async def _admin(kafka: KafkaSettings) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers, client_id="olvm-admin")
    await retry(admin.start, what="connect to Kafka (admin)", policy=KAFKA_CONNECT,
                retriable=lambda e: isinstance(e, (KafkaError, OSError)))
    return admin


def _new_topic(kafka: KafkaSettings, topic: Topic, name: str) -> NewTopic:
    return NewTopic(name=name, num_partitions=kafka.partitions if topic.work else 1,
                    replication_factor=kafka.replication_factor,
                    topic_configs={"retention.ms": str(topic.retention_ms)})


async def ensure_topics(kafka: KafkaSettings, topics: Iterable[Topic] = ALL_TOPICS) -> list[str]:
    """Create missing topics; returns the names created. Existing topics are left as they are."""
    admin = await _admin(kafka)
    try:
        existing = set(await admin.list_topics())
        wanted = [
            _new_topic(kafka, t, t.full_name(kafka.topic_prefix))
            for t in topics
            if not t.family and t.full_name(kafka.topic_prefix) not in existing
        ]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass  # another process won the race
            log.info("created topics %s", ", ".join(t.name for t in wanted))
        return [t.name for t in wanted]
    finally:
        await admin.close()


async def create_topic(kafka: KafkaSettings, topic: Topic, name: str) -> None:
    """Create one member of a family topic (a wave's chunk topic), partitioned like the work topics."""
    admin = await _admin(kafka)
    try:
        await admin.create_topics([_new_topic(kafka, topic, name)])
    except TopicAlreadyExistsError:
        pass  # a retried call: the first one made it
    finally:
        await admin.close()


async def delete_topics(kafka: KafkaSettings, names: Iterable[str]) -> None:
    """Delete topics; names that do not exist (any more) are not an error."""
    names = list(names)
    if not names:
        return
    admin = await _admin(kafka)
    try:
        existing = set(await admin.list_topics())
        gone = [n for n in names if n in existing]
        if gone:
            await admin.delete_topics(gone)
            log.info("deleted topics %s", ", ".join(gone))
    finally:
        await admin.close()


async def list_topics(kafka: KafkaSettings) -> list[str]:
    admin = await _admin(kafka)
    try:
        return sorted(await admin.list_topics())
    finally:
        await admin.close()
