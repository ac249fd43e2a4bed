"""Reader wiring: read tasks in, chunks and task results out (a consumer group: run 1..N)."""
from __future__ import annotations

from olvm_backup.config import Settings
from olvm_backup.errors import BackupError
from olvm_backup.kafka import Bus, Message
from olvm_backup.service import consume_forever
from schemas import ReadTask
from schemas.topics import READ_TASKS

GROUP = "readers"


async def handle_task(bus: Bus, task: ReadTask, where: Message) -> None:
    raise BackupError(f"read task {task.task_id}: the reader is not built yet (issue 4)")


async def main(settings: Settings) -> None:
    await consume_forever(settings, GROUP, [READ_TASKS], handle_task)
