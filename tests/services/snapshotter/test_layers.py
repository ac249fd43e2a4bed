"""The snapshot strategy's decisions (layers.py), directly: ours or not, full or incremental and why, which layers,
and which extents of the snapshot's view an incremental reads or clears."""
from __future__ import annotations

import uuid
from dataclasses import replace

from olvm_backup.engine.snapshots import SnapshotInfo, VolumeInfo, chain_order
from olvm_backup.format.diskmap import DiskMap, Segment
from olvm_backup.format.manifest import Manifest
from olvm_backup.planning import Extent
from services.snapshotter.layers import (backup_of, choose_base, disk_layers, held_ranges, ours,
                                         snapshot_description, snapshot_prefix, within)

BACKUP = str(uuid.UUID(int=1))
KEPT = SnapshotInfo("s1", "vm", snapshot_description(BACKUP, "r1"), "ok", "regular", 1.0)
USER = SnapshotInfo("u1", "vm", "before the upgrade", "ok", "regular", 2.0)


def manifest(**kw) -> Manifest:
    return replace(Manifest(BACKUP, "vm", "web", "full", 1, 2, None, None, None, "k", "r1", "cli", [], {},
                            strategy="snapshot", snapshot_id="s1"), **kw)


def vol(volume_id: str, parent: str | None) -> VolumeInfo:
    return VolumeInfo(volume_id, "d1", parent, None, 0, "ok")


def test_our_snapshots_are_told_by_their_description_naming_a_backup():
    assert backup_of(KEPT.description) == BACKUP
    assert KEPT.description.startswith(snapshot_prefix(BACKUP))
    other = str(uuid.UUID(int=2))
    assert not snapshot_description(other, "r").startswith(snapshot_prefix(BACKUP))
    for theirs in ("before the upgrade", "olvm-backup", "olvm-backup nightly", "olvm-backup snapshot policy gold",
                   f"my olvm-backup {BACKUP}", f"olvm-backup {BACKUP}x", f"olvm-backup {BACKUP}",
                   f"olvm-backup {BACKUP} is what I call mine"):
        assert backup_of(theirs) is None, theirs
    assert ours([KEPT, USER]) == [KEPT]


def test_incremental_from_the_kept_snapshot_else_full_with_the_reason():
    assert choose_base("auto", manifest(), [USER, KEPT]) == (KEPT, "")
    cases = [
        (("full", manifest(), [KEPT]), "full backup requested"),
        (("auto", None, [KEPT]), "no earlier backup"),
        (("auto", manifest(strategy="cbt", snapshot_id=None), [KEPT]), "kept no snapshot on the engine (its "
                                                                        "strategy was cbt)"),
        (("auto", manifest(chunk_hash="sha256"), [KEPT]), "names its chunks by sha256"),
        (("auto", manifest(), [USER]), "snapshot s1 that backup"),
        (("auto", manifest(), [replace(KEPT, status="locked")]), "is locked on the engine"),
    ]
    for args, reason in cases:
        kept, why = choose_base(*args)
        assert kept is None and reason in why, (args, why)


def test_layers_are_the_volumes_between_the_kept_snapshot_and_the_new_one():
    # base <- kept's volume v1 <- a user's snapshot v2 <- the new snapshot's v3 <- active v4
    chain = chain_order([vol("v4", "v3"), vol("v2", "v1"), vol("v1", "v0"), vol("v3", "v2"), vol("v0", None)])
    assert [v.volume_id for v in chain] == ["v0", "v1", "v2", "v3", "v4"]
    plan = disk_layers("os", "v3", "v1", chain, True, KEPT, "")
    assert plan.incremental and plan.layers == ("v2", "v3") and plan.volume == "v3"
    # The user's snapshot merged away: one layer.
    merged = [vol("v0", None), vol("v1", "v0"), vol("v3", "v1"), vol("v4", "v3")]
    assert disk_layers("os", "v3", "v1", merged, True, KEPT, "").layers == ("v3",)


def test_a_disk_goes_full_saying_why():
    chain = [vol("v0", None), vol("v1", "v0"), vol("v3", "v1")]
    reverted = [vol("v0", None), vol("v1", "v0"), vol("v5", "v0")]
    cases = [
        (("os", "v3", "v1", chain, True, None, "no earlier backup"), "no earlier backup"),
        (("os", "v3", "v1", chain, False, KEPT, ""), "not in the previous backup"),
        (("os", "v3", None, chain, True, KEPT, ""), "holds no volume of disk os"),
        (("os", "v5", "v1", reverted, True, KEPT, ""), "does not lead from the new snapshot's volume v5 down to "
                                                       "volume v1"),
        (("os", "v1", "v1", chain, True, KEPT, ""), "is the kept snapshot's"),
    ]
    for args, reason in cases:
        plan = disk_layers(*args)
        assert not plan.incremental and reason in plan.reason, (args, plan)


def test_an_incremental_reads_and_clears_only_what_its_layers_hold():
    mib = 1 << 20
    # Two layers: the older holds [1, 3) MiB, the newer [2, 4) and a zero-write at [8, 9).
    held = held_ranges([[(1 * mib, 2 * mib)], [(2 * mib, 2 * mib), (8 * mib, mib)]])
    assert held == [(1 * mib, 4 * mib), (8 * mib, 9 * mib)]
    # The snapshot's view: data up to 6 MiB, zeros after.
    view = [Extent(0, 6 * mib, True), Extent(6 * mib, 10 * mib, False)]
    got = within(view, held)
    assert got == [Extent(1 * mib, 3 * mib, True), Extent(8 * mib, mib, False)]
    # Laid over the parent's map: the zero range clears the parent's data there, the rest keeps it.
    parent = DiskMap(16 * mib, [Segment(0, 16 * mib, "p")])
    chunks = [Segment(e.start, e.length, "n") for e in got if e.data]
    zeros = [(e.start, e.length) for e in got if not e.data]
    after = parent.overlay(chunks, zeros)
    assert [(s.offset, s.length, s.digest) for s in after] == [
        (0, mib, "p"), (mib, 3 * mib, "n"), (4 * mib, 4 * mib, "p"), (9 * mib, 7 * mib, "p")]
