"""A chunk a writer skipped is sent again from its wave's topic, on the real broker: only once the writers'
commits have reached the topic's end, and only the chunks asked for."""
from __future__ import annotations

import asyncio

from olvm_backup.kafka import Bus, LeasedConsumer, Replay, ensure_topics
from schemas import ChunkData, decode
from schemas.topics import CHUNKS, WRITER_LEASES, WRITERS_GROUP
from services.snapshotter.waves import ChunkTopics


def _chunk(n: int) -> ChunkData:
    return ChunkData(backup_id="b1", task_id=f"t{n}", digest=f"{n:064x}", raw_size=4, codec="none", data=b"data")


async def _until(condition, what: str, timeout: float = 30.0) -> None:
    for _ in range(int(timeout / 0.1)):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_chunk_a_writer_skipped_is_sent_again(kafka_settings):
    await ensure_topics(kafka_settings, [WRITER_LEASES])
    skipped = _chunk(3).digest
    stored: list[str] = []  # what the "writer" stored: every chunk but the first sight of `skipped`
    seen: list[str] = []

    async def writer(chunk: ChunkData, where) -> None:
        seen.append(chunk.digest)
        if chunk.digest != skipped or seen.count(skipped) > 1:
            stored.append(chunk.digest)

    async with Bus(kafka_settings, client_id="test") as bus, ChunkTopics(kafka_settings, "b1") as topics:
        name = await topics.open(0)
        for n in range(8):
            await bus.publish(CHUNKS, _chunk(n), key=str(n), member=name)
        everything = {_chunk(n).digest for n in range(8)}

        # Nothing committed yet: the writers are still at it, and nothing is sent.
        assert await topics.resend_lost(bus, name, {skipped}) is None

        consumer = LeasedConsumer(kafka_settings, bus, CHUNKS, WRITER_LEASES, WRITERS_GROUP, client_id="w")
        async with consumer:
            running = asyncio.create_task(consumer.run(writer, commit_each=True, poll_ms=100))
            try:
                await _until(lambda: len(seen) == 8, "the writer to go through the topic")
                assert set(stored) == everything - {skipped}

                async def resend() -> set[str] | None:
                    return await topics.resend_lost(bus, name, {skipped, "f" * 64})

                # Its commits reach the end of the topic shortly after its last record.
                sent = None
                for _ in range(50):
                    if (sent := await resend()) is not None:
                        break
                    await asyncio.sleep(0.2)
                assert sent == {skipped}, "only the skipped chunk is re-sent; a digest not in the topic is not"
                await _until(lambda: skipped in stored, "the writer to meet the re-sent chunk")
            finally:
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)

        async with Replay(kafka_settings, name, client_id="test/replay") as replay:
            digests = [decode(msg.value, (ChunkData,)).digest async for msg in replay]
        assert sorted(digests) == sorted([*everything, skipped]), "the topic holds the chunk once more, nothing else"
