"""A backup's reads, planned: which read tasks, their ids, ranges, extents and connections, and in which waves.
Pure: built from what the engine and imageio said of each disk, tested without any I/O."""
from __future__ import annotations

from dataclasses import dataclass

from olvm_backup.engine.cbt import TransferInfo
from olvm_backup.planning import Extent, clip_extents, connection_share, group_waves, read_tasks
from schemas import ReadTask

from .chain import DiskPlan


@dataclass(frozen=True)
class OpenDisk:
    """One disk ready to read: its plan, its open transfer, what imageio said of it."""

    plan: DiskPlan
    transfer: TransferInfo
    extents: list[Extent]  # what must be read (imageio.Transfer.extents)
    max_readers: int       # connections the ticket accepts at once


@dataclass(frozen=True)
class PlannedTask:
    task_id: str
    disk: OpenDisk
    offset: int
    length: int
    to_read: int            # bytes of data (full) or dirty data (incremental) in the range
    connections: int        # the task's share of the ticket's max_readers
    extents: list[Extent]   # the disk's, clipped to the range

    def record(self, backup_id: str, chunk_size: int, chunk_topic: str,
               transfer: TransferInfo | None = None) -> ReadTask:
        """The task for readers, on `transfer` when the disk's first one was replaced (reopen.py)."""
        transfer = transfer or self.disk.transfer
        return ReadTask(
            backup_id=backup_id, task_id=self.task_id, disk_id=self.disk.plan.disk.disk_id,
            transfer_url=transfer.transfer_url, proxy_url=transfer.proxy_url, incremental=self.disk.plan.incremental,
            offset=self.offset, length=self.length, chunk_size=chunk_size, chunk_topic=chunk_topic,
            connections=self.connections, extents=[(e.start, e.length, e.data) for e in self.extents])


@dataclass(frozen=True)
class ReadPlan:
    tasks: list[PlannedTask]
    waves: list[list[int]]       # indexes into tasks, wave by wave
    connections: dict[str, int]  # per disk id: connections each of its tasks may open

    @property
    def bytes_total(self) -> int:
        """Disk bytes the tasks cover: what progress counts."""
        return sum(t.length for t in self.tasks)

    @property
    def bytes_to_read(self) -> int:
        """Data (full) or dirty data (incremental) the tasks read: at most what the store is sent."""
        return sum(t.to_read for t in self.tasks)

    @property
    def task_ids(self) -> set[str]:
        return {t.task_id for t in self.tasks}


def plan_reads(backup_id: str, disks: list[OpenDisk], *, task_size: int, tasks_at_once: int,
               wave_bytes: int) -> ReadPlan:
    """Each disk cut into read tasks (planning.read_tasks), `tasks_at_once` of which (the read.tasks partitions)
    may read a disk side by side within its ticket's max_readers; the tasks of every disk, in order, grouped into
    waves by the data they read, not by disk size: an incremental's few dirty megabytes make one wave."""
    tasks: list[PlannedTask] = []
    connections: dict[str, int] = {}
    for disk in disks:
        disk_id = disk.plan.disk.disk_id
        connections[disk_id] = connection_share(disk.max_readers, tasks_at_once)
        for n, (offset, length, data) in enumerate(read_tasks(disk.plan.disk.size, disk.extents, task_size,
                                                              tasks_at_once)):
            tasks.append(PlannedTask(
                task_id=f"{backup_id}/{disk_id}/{n}", disk=disk, offset=offset, length=length, to_read=data,
                connections=connections[disk_id], extents=clip_extents(disk.extents, offset, offset + length)))
    return ReadPlan(tasks, group_waves([t.to_read for t in tasks], wave_bytes), connections)
