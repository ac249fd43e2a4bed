"""Writer wiring: chunks in, pack objects (S3 multipart) and pack indexes out (a consumer group: run 1..N)."""
from __future__ import annotations

from olvm_backup.config import Settings
from olvm_backup.errors import BackupError
from olvm_backup.kafka import Bus, Message
from olvm_backup.service import consume_forever
from schemas import ChunkData
from schemas.topics import CHUNKS

GROUP = "writers"


async def handle_chunk(bus: Bus, chunk: ChunkData, where: Message) -> None:
    raise BackupError(f"chunk {chunk.digest}: the writer is not built yet (issue 4)")


async def main(settings: Settings) -> None:
    await consume_forever(settings, GROUP, [CHUNKS], handle_chunk)
