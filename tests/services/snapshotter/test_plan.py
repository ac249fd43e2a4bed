"""A backup's read plan, without any I/O: tasks cover each disk, carry their own extents and their share of the
ticket's connections, and waves are cut by the data to read."""
from __future__ import annotations

from olvm_backup.engine.cbt import TransferInfo
from olvm_backup.engine.vms import DiskInfo
from olvm_backup.planning import Extent
from services.snapshotter.chain import DiskPlan
from services.snapshotter.plan import OpenDisk, plan_reads

MIB = 1 << 20


def open_disk(disk_id: str, size: int, extents: list[Extent], max_readers: int = 8,
              incremental: bool = False) -> OpenDisk:
    info = DiskInfo(disk_id, disk_id, size, "cow", "virtio_scsi", False, True, True, "sd", True)
    return OpenDisk(DiskPlan(info, incremental, "" if incremental else "first", None),
                    TransferInfo(f"t-{disk_id}", disk_id, f"https://host/images/{disk_id}",
                                 f"https://proxy/images/{disk_id}"), extents, max_readers)


def test_tasks_cover_each_disk_with_their_own_extents_and_connections():
    root = open_disk("root", 256 * MIB, [Extent(0, 100 * MIB, True), Extent(100 * MIB, 156 * MIB, False)])
    data = open_disk("data", 64 * MIB, [Extent(0, 64 * MIB, True)], max_readers=2, incremental=True)
    plan = plan_reads("b1", [root, data], task_size=64 * MIB, tasks_at_once=4, wave_bytes=1 << 40)

    assert [(t.task_id, t.offset, t.length, t.to_read) for t in plan.tasks] == [
        ("b1/root/0", 0, 64 * MIB, 64 * MIB),
        ("b1/root/1", 64 * MIB, 64 * MIB, 36 * MIB),
        ("b1/root/2", 128 * MIB, 128 * MIB, 0),  # data-less ranges make one task, not one each
        ("b1/data/0", 0, 64 * MIB, 64 * MIB),
    ]
    assert plan.tasks[1].extents == [Extent(64 * MIB, 36 * MIB, True), Extent(100 * MIB, 28 * MIB, False)]
    assert plan.connections == {"root": 2, "data": 1}  # 8 // 4 tasks at once; at least one
    assert plan.bytes_total == 320 * MIB
    assert plan.bytes_to_read == 164 * MIB  # what a full store must have room for, not the disks' size
    assert plan.task_ids == {"b1/root/0", "b1/root/1", "b1/root/2", "b1/data/0"}

    record = plan.tasks[3].record("b1", MIB, "chunks.b1.0")
    assert (record.transfer_url, record.proxy_url) == ("https://host/images/data", "https://proxy/images/data")
    assert record.incremental and record.connections == 1 and record.chunk_topic == "chunks.b1.0"
    assert record.extents == [(0, 64 * MIB, True)]


def test_waves_are_cut_by_data_to_read_not_disk_size():
    sparse = open_disk("sparse", 1024 * MIB, [Extent(0, 8 * MIB, True), Extent(8 * MIB, 1016 * MIB, False)])
    full = open_disk("full", 256 * MIB, [Extent(0, 256 * MIB, True)])
    plan = plan_reads("b2", [sparse, full], task_size=64 * MIB, tasks_at_once=2, wave_bytes=128 * MIB)
    assert [[plan.tasks[i].task_id for i in wave] for wave in plan.waves] == [
        ["b2/sparse/0", "b2/sparse/1", "b2/full/0", "b2/full/1"],  # the sparse 1 GiB's 8 MiB: no wave of its own
        ["b2/full/2", "b2/full/3"],
    ]
