"""Which disks go incremental, which full, and why."""
from __future__ import annotations

from olvm_backup.engine.cbt import CheckpointInfo
from olvm_backup.engine.vms import DiskInfo
from olvm_backup.format.diskmap import DiskMap, Segment
from olvm_backup.format.manifest import DiskRecord, Manifest
from schemas import TaskResult
from services.snapshotter.chain import (build_map, choose_checkpoint, in_chain_order, plan_disk, select_disks,
                                         stale_checkpoints)


def disk(disk_id, name, size=1 << 20) -> DiskInfo:
    return DiskInfo(disk_id, name, size, "cow", "virtio_scsi", False, True, True, "sd", True)


def previous(disks) -> Manifest:
    records = [DiskRecord(d.disk_id, d.name, d.size, "cow", "virtio_scsi", False, True, True, "sd", "full", "",
                          DiskMap(d.size, [Segment(0, d.size, "p" * 64)])) for d in disks]
    return Manifest("b0", "vm", "web", "full", 1, 2, "cp0", None, None, "k", "r", "cli", records, {})


def cp(checkpoint_id, parent_id=None, state="created", created=0.0) -> CheckpointInfo:
    return CheckpointInfo(checkpoint_id, parent_id, state, created)


def test_checkpoint_choice_says_why_full():
    prev = previous([disk("d1", "root")])
    assert choose_checkpoint("auto", prev, [cp("cp0")]) == ("cp0", "")
    assert choose_checkpoint("full", prev, [cp("cp0")])[0] is None
    chosen, why = choose_checkpoint("incremental", prev, [cp("cpX")])
    assert chosen is None and "no longer on the engine" in why
    chosen, why = choose_checkpoint("auto", None, [])
    assert chosen is None and "no earlier backup" in why
    prev.chunk_hash = "sha256"  # written by a version that named chunks by SHA-256: its maps cannot be reused
    chosen, why = choose_checkpoint("auto", prev, [cp("cp0")])
    assert chosen is None and "names its chunks by sha256" in why


def test_a_checkpoint_the_engine_lists_invalid_is_said_to_be_invalid_not_gone():
    # After a host lost the bitmaps the engine still lists the checkpoint, as invalid.
    chosen, why = choose_checkpoint("auto", previous([disk("d1", "root")]), [cp("cp0", state="invalid")])
    assert chosen is None
    assert "invalid" in why and "bitmaps are lost" in why and "no longer on the engine" not in why, why


def test_stale_checkpoints_are_the_older_ones_and_the_invalid_ones_oldest_first():
    # Listed out of order; the parent links give the chain a <- b <- c <- d <- e.
    chain = [cp("c", "b", created=3), cp("a", None, "invalid", created=1), cp("e", "d", created=5),
             cp("b", "a", created=2), cp("d", "c", "invalid", created=4)]
    assert [c.checkpoint_id for c in in_chain_order(chain)] == ["a", "b", "c", "d", "e"]
    assert [c.checkpoint_id for c in stale_checkpoints(chain, "c")] == ["a", "b", "d"]
    assert [c.checkpoint_id for c in stale_checkpoints(chain, "e")] == ["a", "b", "c", "d"]
    # Where the next incremental starts is not on the engine: how old the others are is unknown, only invalid go.
    assert [c.checkpoint_id for c in stale_checkpoints(chain, None)] == ["a", "d"]
    assert [c.checkpoint_id for c in stale_checkpoints(chain, "gone")] == ["a", "d"]
    # The root removed on an engine that re-parents: the new root's parent is not listed; the order still holds.
    assert [c.checkpoint_id for c in stale_checkpoints(chain[:1] + chain[2:], "e")] == ["b", "c", "d"]
    # Links the engine does not give: the creation dates order them.
    loose = [cp("y", created=2), cp("x", created=1), cp("z", created=3)]
    assert [c.checkpoint_id for c in stale_checkpoints(loose, "z")] == ["x", "y"]


def test_hot_added_disk_goes_full_while_the_other_stays_incremental():
    old, new = disk("d1", "root"), disk("d2", "added")
    prev = previous([old])
    assert plan_disk(old, "incremental", prev, "cp0", "").incremental
    plan = plan_disk(new, "incremental", prev, "cp0", "")
    assert not plan.incremental and "not in the previous backup" in plan.reason
    plan = plan_disk(old, "full", prev, "cp0", "")
    assert not plan.incremental and "no bitmap" in plan.reason


def test_exclusion_by_name_or_id():
    disks = [disk("d1", "root"), disk("d2", "scratch"), disk("d3", "data")]
    keep, excluded = select_disks(disks, ["scratch", "d3"])
    assert [d.name for d in keep] == ["root"] and [d.name for d in excluded] == ["scratch", "data"]


def test_exclusion_by_name_pattern():
    """A policy's exclude_disks are fnmatch patterns on disk names; ids still match exactly, never as patterns."""
    disks = [disk("d1", "web1-root"), disk("d2", "web1-swap"), disk("d3", "scratch1"), disk("d4", "Scratch2"),
             disk("d5", "blob[1]")]
    keep, excluded = select_disks(disks, ["*-swap", "scratch?", "d*"])
    assert [d.name for d in keep] == ["web1-root", "Scratch2", "blob[1]"]
    assert [d.name for d in excluded] == ["web1-swap", "scratch1"]
    keep, _ = select_disks(disks, ["blob[[]1]"])
    assert "blob[1]" not in [d.name for d in keep]
    keep, _ = select_disks(disks, ["blob[1]"])  # the name as it is, though it reads as a pattern
    assert "blob[1]" not in [d.name for d in keep]


def test_incremental_map_is_parent_plus_changes():
    d = disk("d1", "root")
    plan = plan_disk(d, "incremental", previous([d]), "cp0", "")
    result = TaskResult(backup_id="b1", task_id="t", disk_id="d1", offset=0, length=d.size,
                        chunks=[(4096, 4096, "n" * 64)], zeros=[(0, 512)])
    m = build_map(plan, [result])
    assert [(s.offset, s.length, s.digest[0], s.skip) for s in m] == [
        (512, 3584, "p", 512), (4096, 4096, "n", 0), (8192, d.size - 8192, "p", 8192)]
