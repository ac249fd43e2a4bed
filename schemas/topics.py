"""Every topic: its name, key, records, producers, consumers and retention. TOPICS.md is the same table in prose."""
from __future__ import annotations

from dataclasses import dataclass

from .envelope import Record
from .records import (
    BackupEvent, BackupRequest, ChunkData, DeadLetter, PackStored, PolicyEvent, ReadTask, RepositoryEvent,
    RestoreEvent, RestoreRequest, StoreFault, TaskResult, TransferGone,
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
    family: bool = False  # a name pattern: one topic per backup wave, created and deleted by the snapshotter

    def full_name(self, prefix: str = "") -> str:
        return prefix + self.name

    def member(self, prefix: str, *parts: str) -> str:
        """The concrete topic of a family: `chunks.<backup>.<wave>` -> `chunks.b1.0` (with the prefix)."""
        return prefix + self.stem + ".".join(parts)

    def is_member(self, prefix: str, name: str) -> bool:
        return self.family and name.startswith(prefix + self.stem)

    @property
    def stem(self) -> str:
        return self.name.split("<", 1)[0]


BACKUP_REQUESTS = Topic("backup.requests", "VM name or id (one VM's requests stay in order)", (BackupRequest,),
                        "CLI, schedules, tag triggers", "snapshotter (group), auditor (group)", 7 * DAY_MS,
                        work=True)
BACKUP_EVENTS = Topic("backup.events", "request id", (BackupEvent,),
                      "snapshotter, readers, writers, scheduler (snapshot policies)", "CLI (progress), auditor (group)",
                      -1)
READ_TASKS = Topic("read.tasks", "none (partitions in turn)", (ReadTask,), "snapshotter", "readers (group)", DAY_MS,
                   work=True)
READ_RESULTS = Topic("read.results", "backup id", (TaskResult, TransferGone), "readers", "snapshotter", DAY_MS)
CHUNKS = Topic("chunks.<backup>.<wave>", "chunk digest", (ChunkData,), "readers", "writers (leases)", 6 * HOUR_MS,
               work=True, family=True)
WRITER_LEASES = Topic("writer.leases", "none: never written", (), "nobody",
                      "writers (group): partition p leased = partition p of every chunk topic", DAY_MS, work=True)
# The writers' consumer group. Their chunk-topic offsets are committed under "<group>.offsets" (leased.py), once the
# packs holding those chunks are durable: the snapshotter reads them to tell a slow writer from a skipped chunk.
WRITERS_GROUP = "writers"
SCHEDULER_LEADER = Topic("scheduler.leader", "none: never written", (), "nobody",
                         "schedulers (group): the member assigned its one partition is the active scheduler", DAY_MS)
# The schedulers' consumer group: membership is leadership (services/scheduler/leadership.py).
SCHEDULER_GROUP = "scheduler"
PACKS = Topic("packs", "pack key", (PackStored,), "writers", "snapshotter, readers (index)", 30 * DAY_MS)
STORE_FAULTS = Topic("store.faults", "writer", (StoreFault,), "writers", "snapshotter (shown on its backups)", DAY_MS)
RESTORE_REQUESTS = Topic("restore.requests", "restore point id", (RestoreRequest,), "CLI", "restorer, auditor (group)",
                         7 * DAY_MS)
RESTORE_EVENTS = Topic("restore.events", "request id", (RestoreEvent,), "restorer", "CLI (progress), auditor (group)",
                       -1)
POLICY_EVENTS = Topic("policy.events", "policy name", (PolicyEvent,), "CLI, scheduler", "auditor (group)", -1)
REPOSITORY_EVENTS = Topic("repository.events", "restore point id (a pack's key for gc)", (RepositoryEvent,),
                          "CLI, scheduler", "auditor (group)", -1)
DEAD_LETTERS = Topic("dead.letters", "source topic", (DeadLetter,), "every consumer", "operators", 30 * DAY_MS)

ALL_TOPICS: tuple[Topic, ...] = (
    BACKUP_REQUESTS, BACKUP_EVENTS, READ_TASKS, READ_RESULTS, CHUNKS, WRITER_LEASES, SCHEDULER_LEADER, PACKS,
    STORE_FAULTS, RESTORE_REQUESTS, RESTORE_EVENTS, POLICY_EVENTS, REPOSITORY_EVENTS,
    DEAD_LETTERS,
)


def topic_table() -> str:
    """The markdown table of TOPICS.md, generated from the declarations (a test keeps them in step)."""
    rows = ["| topic | key | records | producers | consumers | retention |", "|---|---|---|---|---|---|"]
    for t in ALL_TOPICS:
        retention = "forever (audit)" if t.retention_ms < 0 else (
            f"{t.retention_ms // DAY_MS} d" if t.retention_ms >= DAY_MS else f"{t.retention_ms // HOUR_MS} h")
        records = ", ".join(r.type_name for r in t.records) or "none"
        rows.append(f"| `{t.name}` | {t.key} | {records} | {t.producers} | {t.consumers} | {retention} |")
    return "\n".join(rows)
