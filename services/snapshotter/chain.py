"""Chain decisions and disk maps, as pure logic: which checkpoint to start from, which disks go full and why."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from olvm_backup.engine.vms import DiskInfo
from olvm_backup.format.chunks import CHUNK_HASH
from olvm_backup.format.diskmap import DiskMap, Segment
from olvm_backup.format.manifest import DiskRecord, Manifest
from schemas import TaskResult


@dataclass(frozen=True)
class DiskPlan:
    disk: DiskInfo
    incremental: bool
    reason: str          # why full, when it is
    parent: DiskRecord | None


def select_disks(disks: list[DiskInfo], exclude: Iterable[str]) -> tuple[list[DiskInfo], list[DiskInfo]]:
    """(backed up, excluded): exclusion by disk name or id."""
    excluded = set(exclude)
    keep = [d for d in disks if d.disk_id not in excluded and d.name not in excluded]
    return keep, [d for d in disks if d not in keep]


def choose_checkpoint(mode: str, previous: Manifest | None,
                      engine_checkpoints: Iterable[str]) -> tuple[str | None, str]:
    """(from_checkpoint or None for full, the reason when full)."""
    if mode == "full":
        return None, "full backup requested"
    if previous is None:
        return None, "no earlier backup of this VM in the catalog"
    if not previous.to_checkpoint:
        return None, f"the last backup {previous.backup_id} recorded no checkpoint"
    if previous.chunk_hash != CHUNK_HASH:  # its maps cannot be laid under chunks named another way
        return None, (f"the last backup {previous.backup_id} names its chunks by {previous.chunk_hash}, this version "
                      f"by {CHUNK_HASH}")
    if previous.to_checkpoint not in set(engine_checkpoints):
        return None, f"checkpoint {previous.to_checkpoint} of backup {previous.backup_id} is no longer on the engine"
    return previous.to_checkpoint, ""


def plan_disk(disk: DiskInfo, engine_mode: str, previous: Manifest | None, from_checkpoint: str | None,
              full_reason: str) -> DiskPlan:
    if from_checkpoint is None:
        return DiskPlan(disk, False, full_reason, None)
    parent = next((d for d in previous.disks if d.disk_id == disk.disk_id), None) if previous else None
    if parent is None:
        return DiskPlan(disk, False, "disk was not in the previous backup (added or included since)", None)
    if engine_mode != "incremental":
        return DiskPlan(disk, False, f"the engine has no bitmap for checkpoint {from_checkpoint} on this disk "
                                     "(added since, or the bitmap was lost)", None)
    return DiskPlan(disk, True, "", parent)


def build_map(plan: DiskPlan, results: Iterable[TaskResult]) -> DiskMap:
    """The complete map of the disk at this restore point."""
    results = list(results)
    changes = [Segment(o, n, d) for r in results for o, n, d in r.chunks]
    if plan.incremental:
        assert plan.parent is not None
        zeros = [z for r in results for z in r.zeros]
        return plan.parent.map.overlay(changes, zeros, size=plan.disk.size)
    return DiskMap(plan.disk.size, changes)
