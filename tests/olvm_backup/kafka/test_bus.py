"""Records through the real broker between real service processes; malformed ones dead-lettered."""
from __future__ import annotations

import os
import sys
import time
import uuid

from aiokafka import AIOKafkaConsumer

from olvm_backup.config import to_environ
from olvm_backup.kafka import Bus, ensure_topics
from olvm_backup.stack.processes import ManagedProcess
from tests.conftest import plain_repository
from schemas import BackupEvent, BackupRequest, DeadLetter, ReadTask, decode
from schemas.topics import BACKUP_EVENTS, BACKUP_REQUESTS, DEAD_LETTERS, READ_TASKS


async def _collect(settings, topic, want: int, timeout: float = 60.0) -> list:
    consumer = AIOKafkaConsumer(topic.full_name(settings.kafka.topic_prefix),
                                bootstrap_servers=settings.kafka.bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    records = []
    try:
        deadline = time.monotonic() + timeout
        while len(records) < want and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                records += [decode(m.value, topic.records) for m in messages]
    finally:
        await consumer.stop()
    return records


async def test_record_crosses_processes_and_malformed_goes_to_dead_letters(settings, tmp_path):
    await ensure_topics(settings.kafka)
    plain_repository(settings)
    snapshotter = ManagedProcess(
        "snapshotter", [sys.executable, "-m", "services.snapshotter"],
        env={**os.environ, **to_environ(settings)}, log_file=tmp_path / "snapshotter.log")
    with snapshotter:
        async with Bus(settings.kafka, client_id="test-cli") as bus:
            requests_topic = bus.topic_name(BACKUP_REQUESTS)
            await bus.publish_raw(requests_topic, b"\x93not an envelope", key="vm-x")
            good = BackupRequest(request_id=uuid.uuid4().hex, vm="web01", mode="full", requested_at=time.time())
            await bus.publish(BACKUP_REQUESTS, good, key=good.vm)

        letters = await _collect(settings, DEAD_LETTERS, 1)
        events = await _collect(settings, BACKUP_EVENTS, 1)
        assert snapshotter.running(), snapshotter.tail()

    assert len(letters) == 1 and isinstance(letters[0], DeadLetter)
    letter = letters[0]
    assert letter.source_topic == requests_topic
    assert letter.value == b"\x93not an envelope" and letter.key == b"vm-x"
    assert "cannot decode record" in letter.reason and letter.error_type == "DecodeError"
    assert letter.consumer_group == "snapshotter"

    # The valid record behind the malformed one was processed, by the other process, typed.
    accepted = [e for e in events if e.kind == "accepted"]
    assert accepted and isinstance(accepted[0], BackupEvent)
    assert accepted[0].request_id == good.request_id and accepted[0].vm == "web01"


async def test_keyless_work_takes_the_partitions_in_turn_and_keyed_records_stay_together(settings):
    """Read tasks carry no key so that consecutive ones go to different readers; a VM's requests stay in order."""
    await ensure_topics(settings.kafka)
    partitions = settings.kafka.partitions
    backup = uuid.uuid4().hex
    async with Bus(settings.kafka, client_id="test-turns") as bus:
        for n in range(2 * partitions):
            await bus.publish(READ_TASKS, ReadTask(
                backup_id=backup, task_id=f"{backup}/d/{n}", disk_id="d", transfer_url="https://h/t", proxy_url=None,
                incremental=False, offset=n << 20, length=1 << 20, chunk_size=1 << 20, chunk_topic="chunks.x.0"))
        for _ in range(4):
            await bus.publish(BACKUP_REQUESTS, BackupRequest(request_id=uuid.uuid4().hex, vm="web01", mode="full",
                                                             requested_at=time.time()), key="web01")

    async def partitions_of(topic, keep) -> list[int]:
        consumer = AIOKafkaConsumer(topic.full_name(settings.kafka.topic_prefix),
                                    bootstrap_servers=settings.kafka.bootstrap_servers,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        seen: list[int] = []
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                if seen and not batch:
                    break  # everything published has been read
                for tp, messages in batch.items():
                    seen += [tp.partition for m in messages if keep(decode(m.value, topic.records))]
        finally:
            await consumer.stop()
        return seen

    tasks = await partitions_of(READ_TASKS, lambda t: t.backup_id == backup)
    assert sorted(tasks) == sorted(list(range(partitions)) * 2), "each partition gets its turn, twice"
    requests = await partitions_of(BACKUP_REQUESTS, lambda r: r.vm == "web01")
    assert len(requests) >= 4 and len(set(requests)) == 1, "one VM's requests share a partition"
