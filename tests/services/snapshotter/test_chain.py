"""Which disks go incremental, which full, and why."""
from __future__ import annotations

from olvm_backup.engine.vms import DiskInfo
from olvm_backup.format.diskmap import DiskMap, Segment
from olvm_backup.format.manifest import DiskRecord, Manifest
from schemas import TaskResult
from services.snapshotter.chain import build_map, choose_checkpoint, plan_disk, select_disks


def disk(disk_id, name, size=1 << 20) -> DiskInfo:
    return DiskInfo(disk_id, name, size, "cow", "virtio_scsi", False, True, True, "sd", True)


def previous(disks) -> Manifest:
    records = [DiskRecord(d.disk_id, d.name, d.size, "cow", "virtio_scsi", False, True, True, "sd", "full", "",
                          DiskMap(d.size, [Segment(0, d.size, "p" * 64)])) for d in disks]
    return Manifest("b0", "vm", "web", "full", 1, 2, "cp0", None, None, "k", "r", "cli", records, {})


def test_checkpoint_choice_says_why_full():
    prev = previous([disk("d1", "root")])
    assert choose_checkpoint("auto", prev, ["cp0"]) == ("cp0", "")
    assert choose_checkpoint("full", prev, ["cp0"])[0] is None
    cp, why = choose_checkpoint("incremental", prev, ["cpX"])
    assert cp is None and "no longer on the engine" in why
    cp, why = choose_checkpoint("auto", None, [])
    assert cp is None and "no earlier backup" in why
    prev.chunk_hash = "sha256"  # written by a version that named chunks by SHA-256: its maps cannot be reused
    cp, why = choose_checkpoint("auto", prev, ["cp0"])
    assert cp is None and "names its chunks by sha256" in why


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


def test_incremental_map_is_parent_plus_changes():
    d = disk("d1", "root")
    plan = plan_disk(d, "incremental", previous([d]), "cp0", "")
    result = TaskResult(backup_id="b1", task_id="t", disk_id="d1", offset=0, length=d.size,
                        chunks=[(4096, 4096, "n" * 64)], zeros=[(0, 512)])
    m = build_map(plan, [result])
    assert [(s.offset, s.length, s.digest[0], s.skip) for s in m] == [
        (512, 3584, "p", 512), (4096, 4096, "n", 0), (8192, d.size - 8192, "p", 8192)]
