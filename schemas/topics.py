"""Every topic: its name, key, records, producers, consumers and retention. TOPICS.md is the same table in prose."""
from __future__ import annotations

from dataclasses import dataclass

from .envelope import Record
from .records import (
    BackupEvent, BackupRequest, ChunkData, DeadLetter, PackStored, ReadTask, RestoreEvent, RestoreRequest,
    TaskResult,
)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class Topic:
    name: str
    key: str
    records: tuple[type[Record], ...]
    producers: str
    consumers: str
    retention_ms: int  # -1 = forever
    work: bool = False  # partitioned for parallel consumers

    def full_name(self, prefix: str = "") -> str:
        return prefix + self.name


BACKUP_REQUESTS = Topic("backup.requests", "VM name or id (one VM's requests stay in order)", (BackupRequest,),
                        "CLI, schedules, tag triggers", "snapshotter (group)", 7 * DAY_MS, work=True)
BACKUP_EVENTS = Topic("backup.events", "request id", (BackupEvent,),
                      "snapshotter, readers, writers", "CLI (progress), audit", -1)
READ_TASKS = Topic("read.tasks", "task id", (ReadTask,), "snapshotter", "readers (group)", DAY_MS, work=True)
READ_RESULTS = Topic("read.results", "backup id", (TaskResult,), "readers", "snapshotter", DAY_MS)
CHUNKS = Topic("chunks", "chunk digest", (ChunkData,), "readers", "writers (group)", 6 * HOUR_MS, work=True)
PACKS = Topic("packs", "pack key", (PackStored,), "writers", "snapshotter, readers (index)", 30 * DAY_MS)
RESTORE_REQUESTS = Topic("restore.requests", "restore point id", (RestoreRequest,), "CLI", "restorer", 7 * DAY_MS)
RESTORE_EVENTS = Topic("restore.events", "request id", (RestoreEvent,), "restorer", "CLI (progress), audit", -1)
DEAD_LETTERS = Topic("dead.letters", "source topic", (DeadLetter,), "every consumer", "operators", 30 * DAY_MS)

ALL_TOPICS: tuple[Topic, ...] = (
    BACKUP_REQUESTS, BACKUP_EVENTS, READ_TASKS, READ_RESULTS, CHUNKS, PACKS,
    RESTORE_REQUESTS, RESTORE_EVENTS, DEAD_LETTERS,
)


def topic_table() -> str:
    """The markdown table of TOPICS.md, generated from the declarations (a test keeps them in step)."""
    rows = ["| topic | key | records | producers | consumers | retention |", "|---|---|---|---|---|---|"]
    for t in ALL_TOPICS:
        retention = "forever (audit)" if t.retention_ms < 0 else (
            f"{t.retention_ms // DAY_MS} d" if t.retention_ms >= DAY_MS else f"{t.retention_ms // HOUR_MS} h")
        records = ", ".join(r.type_name for r in t.records)
        rows.append(f"| `{t.name}` | {t.key} | {records} | {t.producers} | {t.consumers} | {retention} |")
    return "\n".join(rows)
