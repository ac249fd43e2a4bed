"""Encryption at rest, end to end: a guest writes a recognisable text; while the backup runs its chunks are on the
chunk topics and, once it is done, in the bucket: neither holds the text. The restore point still restores byte for
byte, and a wrong passphrase is refused with a message saying so."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

from olvm_backup.objectstore import open_store

from .test_cbt_backup import exported_hash, restore_points

MIB = 1024 * 1024
PATTERN = "OLVM-GUEST-SECRET: the payroll of 2026, row "


def chunk_records(pipeline) -> list[bytes]:
    """Every record on the backup's chunk topics, as the broker holds it."""
    from aiokafka import TopicPartition
    from olvm_backup.kafka.consumer import kafka_consumer, partitions_of

    topics = pipeline.chunk_topics()
    if not topics:  # none yet (a consumer stopped before any assignment ends cancelled)
        return []

    async def read() -> list[bytes]:
        consumer = kafka_consumer(pipeline.settings.kafka, group=None, client_id="test-chunks",
                                  fetch_max_bytes=64 * MIB)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for topic in topics
                   for p in sorted(await partitions_of(consumer, topic))]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, 0)
            end = await consumer.end_offsets(tps)
            values: list[bytes] = []
            while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    values += [r.value for r in records]
            return values
        finally:
            await consumer.stop()
    return asyncio.run(read())


def bucket_objects(settings) -> dict[str, bytes]:
    async def read() -> dict[str, bytes]:
        async with open_store(settings.s3, ensure_bucket=False) as store:
            return {info.key: await store.get(info.key) async for info in store.list("")}
    return asyncio.run(read())


def test_no_guest_byte_rests_in_clear_on_the_topics_or_in_the_bucket(pipeline, admin, engine_view, tmp_path):
    admin.write("app1", "app1_data", 8 * MIB, 4 * MIB, pattern="text", text=PATTERN)
    expected = admin.checksum("app1", "app1_data")

    # With no writer, the chunks wait on their topics: read what the broker holds while the backup runs.
    pipeline.stop("writer")
    running = subprocess.Popen([sys.executable, "-m", "olvm_backup.cli.main", "backup", "app1", "--wait",
                                "--exclude", "app1_os", "--exclude", "app1_scratch"], env=pipeline.env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, seen = time.monotonic() + 120, []
        while time.monotonic() < deadline:
            seen = chunk_records(pipeline)
            if len(seen) >= 4:  # 4 MiB of text and the random 4 MiB: at least 8 chunks, a few are enough
                break
            time.sleep(1.0)
        assert len(seen) >= 4, "the readers published no chunks"
        assert not [r for r in seen if PATTERN.encode() in r], "guest bytes on a chunk topic in clear"
    finally:
        pipeline.start("writer", "writer")
        out, err = running.communicate(timeout=600)
    assert running.returncode == 0, f"{out}\n{err}"

    objects = bucket_objects(pipeline.settings)
    assert any(k.startswith("packs/") for k in objects) and any(k.endswith("/manifest") for k in objects)
    clear = [k for k, body in objects.items() if PATTERN.encode() in body or b"app1_data" in body]
    assert clear == [], f"objects holding the guest's text or the disk's name in clear: {clear}"
    password = pipeline.settings.repository.password.reveal().encode()
    assert not [k for k, body in objects.items() if password in body]

    [point] = restore_points(pipeline, "app1")
    assert exported_hash(pipeline, tmp_path, point["backup_id"], "app1_data") == expected
    assert engine_view.leftovers() == []

    wrong = subprocess.run([sys.executable, "-m", "olvm_backup.cli.main", "backups"], capture_output=True, text=True,
                           env={**pipeline.env, "OLVM_REPOSITORY_PASSWORD": "not-the-passphrase"}, timeout=120)
    assert wrong.returncode == 1 and "opens no key of this repository" in wrong.stderr, wrong.stderr
    assert "not-the-passphrase" not in wrong.stderr + wrong.stdout
    assert os.environ.get("OLVM_REPOSITORY_PASSWORD") is None  # the tests' own environment holds no passphrase
