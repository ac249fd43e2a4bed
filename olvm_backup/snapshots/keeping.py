"""Which of a snapshot policy's snapshots of one VM its retention keeps (pure): retention.py's rules, the same as
for restore points, over the snapshots the policy itself made (ours, recorded with its name), dated by the engine.
The newest is always kept. A snapshot not ours, or another policy's or taken by hand, is never a candidate."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from ..retention import Decision, Point, Rules, decide
from .ownership import correlation_of
from .records import SnapshotRecord


@dataclass(frozen=True)
class Snap:
    """A snapshot as keeping sees it."""

    snapshot_id: str
    description: str
    date: float  # UNIX seconds, the engine's


def policy_snapshots(snaps: Iterable[Snap], records: Mapping[str, SnapshotRecord], policy: str) -> list[Snap]:
    """The snapshots `policy` made: our description, its correlation id recorded, and recorded for this policy."""
    out = []
    for s in snaps:
        record = records.get(correlation_of(s.description) or "")
        if record is not None and record.policy == policy:
            out.append(s)
    return out


def decide_snapshots(snaps: Iterable[Snap], records: Mapping[str, SnapshotRecord], policy: str,
                     rules: Rules) -> list[Decision]:
    """One decision per snapshot of the policy, newest first (`Decision.point.backup_id` is the snapshot id)."""
    mine = policy_snapshots(snaps, records, policy)
    return decide([Point(s.snapshot_id, s.date) for s in mine], rules)


def to_remove(snaps: Iterable[Snap], records: Mapping[str, SnapshotRecord], policy: str, rules: Rules) -> list[str]:
    return [d.point.backup_id for d in decide_snapshots(snaps, records, policy, rules) if not d.keep]
