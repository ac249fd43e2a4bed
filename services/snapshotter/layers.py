"""The snapshot strategy's decisions, as pure logic: which snapshots are ours, whether a disk goes incremental, which
volume layers it reads, and which of a snapshot's extents those layers hold.

A backup of this strategy takes a VM snapshot and keeps it on the engine until the next backup's is committed. A
disk's volumes written since our kept snapshot are the layers of its chain above the kept snapshot's volume, up to
and including the new snapshot's volume (more than one when users took snapshots in between). A `shallow`
transfer of each layer says which ranges it holds: imageio calls a range the layer does not hold a hole, and a range
it holds as zeros (a zero-write, a discard) zero but no hole. The new restore point is the parent's map with the
union of those ranges laid over it: read, where they hold data, through the new snapshot's own view (the newest
layer's bytes, so a range written in two layers is read once), and zeros where they hold zeros. Ranges no layer
holds keep the parent's data.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from olvm_backup.engine.snapshots import SnapshotInfo, VolumeInfo
from olvm_backup.format.chunks import CHUNK_HASH
from olvm_backup.format.manifest import Manifest
from olvm_backup.planning import Extent

# Our snapshots' descriptions: "olvm-backup <backup id> (request <request id>)"; the backup id is also the
# correlation id of every engine call the backup makes.
SNAPSHOT_PREFIX = "olvm-backup "
_OURS = re.compile(r"^olvm-backup ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}) \(request [^()]*\)$")
STRATEGY = "snapshot"


def snapshot_description(backup_id: str, request_id: str) -> str:
    return f"{SNAPSHOT_PREFIX}{backup_id} (request {request_id})"


def snapshot_prefix(backup_id: str) -> str:
    """What the description of the snapshot of backup `backup_id`, and of no other, starts with."""
    return f"{SNAPSHOT_PREFIX}{backup_id}"


def backup_of(description: str) -> str | None:
    """The backup id a snapshot of ours names; None for a snapshot this strategy did not make."""
    m = _OURS.match(description)
    return m.group(1) if m else None


def ours(snapshots: Iterable[SnapshotInfo]) -> list[SnapshotInfo]:
    return [s for s in snapshots if backup_of(s.description)]


def choose_base(mode: str, previous: Manifest | None, on_engine: Iterable[SnapshotInfo],
                chunk_hash: str = CHUNK_HASH) -> tuple[SnapshotInfo | None, str]:
    """(our kept snapshot to go incremental from, or None for a full; the reason when full)."""
    if mode == "full":
        return None, "full backup requested"
    if previous is None:
        return None, "no earlier backup of this VM in the catalog"
    if previous.strategy != STRATEGY or not previous.snapshot_id:
        return None, (f"the last backup {previous.backup_id} kept no snapshot on the engine (its strategy was "
                      f"{previous.strategy})")
    if previous.chunk_hash != chunk_hash:  # its maps cannot be laid under chunks named another way
        return None, (f"the last backup {previous.backup_id} names its chunks by {previous.chunk_hash}, this one "
                      f"by {chunk_hash}")
    kept = next((s for s in on_engine if s.snapshot_id == previous.snapshot_id), None)
    if kept is None:
        return None, (f"snapshot {previous.snapshot_id} that backup {previous.backup_id} kept is no longer on the "
                      "engine (removed by a user?)")
    if kept.status != "ok":
        return None, (f"snapshot {previous.snapshot_id} that backup {previous.backup_id} kept is {kept.status} on "
                      "the engine")
    return kept, ""


@dataclass(frozen=True)
class Layers:
    """How one disk is read: `layers` empty for a full (the whole snapshot), else the volumes written since the kept
    snapshot, oldest first; `reason` says why full, when it is."""

    volume: str                # the new snapshot's volume of the disk: what is downloaded
    layers: tuple[str, ...]
    reason: str = ""

    @property
    def incremental(self) -> bool:
        return bool(self.layers)


def disk_layers(disk_name: str, new_volume: str, kept_volume: str | None, chain: list[VolumeInfo],
                in_previous: bool, kept: SnapshotInfo | None, full_reason: str) -> Layers:
    """The layers of one disk between our kept snapshot's volume and the new snapshot's, by the chain's parent
    links; a full with the reason whenever they do not lead from one to the other."""
    if kept is None:
        return Layers(new_volume, (), full_reason)
    if not in_previous:
        return Layers(new_volume, (), "disk was not in the previous backup (added or included since)")
    if kept_volume is None:
        return Layers(new_volume, (), f"the kept snapshot {kept.snapshot_id} holds no volume of disk {disk_name} "
                                      "(the disk was not in it)")
    parents = {v.volume_id: v.parent_id for v in chain}
    walked: list[str] = []
    node: str | None = new_volume
    while node is not None and node != kept_volume:
        if node in walked or node not in parents:
            break
        walked.append(node)
        node = parents[node]
    if node != kept_volume:
        return Layers(new_volume, (), f"the chain of disk {disk_name} does not lead from the new snapshot's volume "
                                      f"{new_volume} down to volume {kept_volume} of the kept snapshot "
                                      f"{kept.snapshot_id} (reverted, or changed outside this product)")
    if not walked:
        return Layers(new_volume, (), f"the new snapshot's volume of disk {disk_name} is the kept snapshot's")
    return Layers(new_volume, tuple(reversed(walked)))


def held_ranges(layer_extents: Iterable[Iterable[tuple[int, int]]]) -> list[tuple[int, int]]:
    """The union of the ranges (start, length) the layers hold, as sorted, disjoint (start, end) pairs."""
    spans = sorted((s, s + n) for layer in layer_extents for s, n in layer if n > 0)
    out: list[tuple[int, int]] = []
    for start, end in spans:
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def within(extents: Iterable[Extent], ranges: list[tuple[int, int]]) -> list[Extent]:
    """The parts of `extents` (the new snapshot's view: data, or reads as zeros) inside `ranges`: what an
    incremental reads (data) and clears (zeros); everything else keeps the parent's data."""
    out: list[Extent] = []
    ranges = list(ranges)
    i = 0
    for e in extents:
        while i < len(ranges) and ranges[i][1] <= e.start:
            i += 1
        j = i
        while j < len(ranges) and ranges[j][0] < e.end:
            lo, hi = max(e.start, ranges[j][0]), min(e.end, ranges[j][1])
            if lo < hi:
                out.append(Extent(lo, hi - lo, e.data))
            j += 1
    return out
