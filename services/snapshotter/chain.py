"""Chain decisions and disk maps, as pure logic: which checkpoint to start from, which disks go full and why."""
from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Iterable

from olvm_backup.engine.cbt import CheckpointInfo
from olvm_backup.engine.chains import linked_order
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
    # The snapshot strategy (layers.py): the volume downloaded, and for an incremental the layers it reads.
    volume: str | None = None
    layers: tuple[str, ...] = ()


def select_disks(disks: list[DiskInfo], exclude: Iterable[str]) -> tuple[list[DiskInfo], list[DiskInfo]]:
    """(backed up, excluded): exclusion by disk id (exact) or by name, an fnmatch pattern (`*-swap`, `scratch?`;
    a name matches itself, brackets and all; case counts), as a policy's `exclude_disks` gives them."""
    patterns = list(exclude)
    excluded = set(patterns)
    keep = [d for d in disks if d.disk_id not in excluded and d.name not in excluded
            and not any(fnmatchcase(d.name, p) for p in patterns)]
    return keep, [d for d in disks if d not in keep]


def choose_checkpoint(mode: str, previous: Manifest | None, engine_checkpoints: Iterable[CheckpointInfo],
                      chunk_hash: str = CHUNK_HASH) -> tuple[str | None, str]:
    """(from_checkpoint or None for full, the reason when full); `chunk_hash` is how this backup names chunks (keyed in
    an encrypted repository: the first backup after encryption is turned on is full)."""
    if mode == "full":
        return None, "full backup requested"
    if previous is None:
        return None, "no earlier backup of this VM in the catalog"
    if not previous.to_checkpoint:
        return None, f"the last backup {previous.backup_id} recorded no checkpoint"
    if previous.chunk_hash != chunk_hash:  # its maps cannot be laid under chunks named another way
        return None, (f"the last backup {previous.backup_id} names its chunks by {previous.chunk_hash}, this one "
                      f"by {chunk_hash}")
    on_engine = {c.checkpoint_id: c for c in engine_checkpoints}.get(previous.to_checkpoint)
    if on_engine is None:
        return None, f"checkpoint {previous.to_checkpoint} of backup {previous.backup_id} is no longer on the engine"
    if on_engine.state == "invalid":
        return None, (f"the engine lists checkpoint {previous.to_checkpoint} of backup {previous.backup_id} as "
                      "invalid: its bitmaps are lost (after a host crash or a disk moved, for instance)")
    return previous.to_checkpoint, ""


def in_chain_order(engine_checkpoints: Iterable[CheckpointInfo]) -> list[CheckpointInfo]:
    """Oldest first, by the parent links (a checkpoint whose parent is not listed starts the chain); what the links
    leave out follows by creation date."""
    return linked_order(sorted(engine_checkpoints, key=lambda c: c.created), lambda c: c.checkpoint_id,
                        lambda c: c.parent_id)


def stale_checkpoints(engine_checkpoints: Iterable[CheckpointInfo], keep: str | None) -> list[CheckpointInfo]:
    """The checkpoints no backup will start from, oldest first: every one older than `keep` (where the next
    incremental starts) and every invalid one. Oldest first, because engines of 4.4 remove only a chain's root.
    Without `keep` on the engine, its age is unknown: only the invalid ones go."""
    ordered = in_chain_order(engine_checkpoints)
    ids = [c.checkpoint_id for c in ordered]
    older = ids.index(keep) if keep in ids else 0
    return [c for i, c in enumerate(ordered) if i < older or c.state == "invalid"]


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
