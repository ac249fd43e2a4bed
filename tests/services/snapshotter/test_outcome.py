"""A backup's outcome is made from what it committed, travels typed, and is what the CLI's summary shows."""
from __future__ import annotations

import io

from olvm_backup.cli.jobs import _restore_summary, _summary
from olvm_backup.cli.progress import ProgressBar
from olvm_backup.errors import BackupError
from olvm_backup.format.diskmap import DiskMap, Segment
from olvm_backup.format.manifest import DiskRecord, Location, Manifest
from schemas import BackupEvent, RestoreEvent, RestoreOutcome, decode, encode
from services.snapshotter import outcome
from services.snapshotter.quiesce import plan_consistency
from services.snapshotter.steps import StepTimes

MIB = 1 << 20


def _disk(name: str, mode: str, reason: str, read: int, new: int) -> DiskRecord:
    return DiskRecord(disk_id=f"id-{name}", name=name, size=1 << 30, format="cow", interface="virtio_scsi",
                      bootable=name == "os", active=True, sparse=True, storage_domain="sd1", mode=mode, reason=reason,
                      map=DiskMap(1 << 30, [Segment(0, 4096, "a" * 64)]), bytes_read=read, bytes_new=new)


def _manifest() -> Manifest:
    return Manifest(backup_id="b2", vm_id="v1", vm_name="web", mode="incremental", created_at=1.0, completed_at=2.0,
                    to_checkpoint="cp2", from_checkpoint="cp1", parent_backup="b1", ovf_key="backups/v1/b2/vm.ovf",
                    request_id="r", requested_by="cli", chunks={"a" * 64: Location("packs/x/p", 0, 100, 4096, "zstd")},
                    disks=[_disk("os", "incremental", "", 8 * MIB, 3 * MIB),
                           _disk("data", "full", "new disk", 2 * MIB, MIB)])


def _steps() -> StepTimes:
    steps = StepTimes()
    for name, seconds in (("commit", 0.25), ("prepare", 0.1), ("engine start", 1.5), ("read and store", 4.0)):
        steps.add(name, seconds)
    return steps


def _shown(summary, event) -> tuple[int, str]:
    out = io.StringIO()
    return summary(ProgressBar(out), decode(encode(event))), out.getvalue()


def test_a_committed_backup_says_what_its_manifest_holds():
    consistency = plan_consistency(True, "up", guest_agent=True).outcome("frozen")
    done = outcome.completed(_manifest(), _steps(), 6.12345, consistency)
    assert (done.mode, done.bytes_read, done.bytes_stored) == ("incremental", 10 * MIB, 4 * MIB)
    assert list(done.disks) == ["os", "data"] and done.disks["data"].reason == "new disk"
    assert list(done.steps) == ["prepare", "engine start", "read and store", "commit"]
    assert (done.duration, done.consistency, done.vm_id, done.to_checkpoint) == (6.123, "frozen", "v1", "cp2")
    assert done.error_type is None

    event = BackupEvent(request_id="r", backup_id="b2", vm="web", kind="completed", at=2.0, outcome=done,
                        message=outcome.summary("b2", "web", done))
    assert event.message == \
        f"backup b2 of web completed: incremental, read {10 * MIB} bytes, stored {4 * MIB} new bytes"
    code, text = _shown(_summary, event)
    assert code == 0
    assert "completed: restore point b2 of web (incremental)" in text
    assert "read 10.0 MiB, stored 4.0 MiB new (after dedup and compression), in 0:06" in text
    assert "disk data: full (new disk), read 2.0 MiB, stored 1.0 MiB" in text
    assert "consistency: guest file systems frozen by the engine for the checkpoint (required)" in text
    assert "time: prepare 0.10 s, engine start 1.50 s, read and store 4.00 s, commit 0.25 s" in text


def test_a_failed_backup_says_how_far_it_got():
    failed = outcome.failed(BackupError("no disk"), _steps(), 1.0, None)
    assert failed.error_type == "BackupError" and failed.mode is None and failed.disks == {}
    event = BackupEvent(request_id="r", backup_id="b2", vm="web", kind="failed", at=2.0, message="no disk",
                        outcome=failed)
    code, text = _shown(_summary, event)
    assert code == 1 and text.splitlines() == [
        "FAILED: no disk", "  time: prepare 0.10 s, engine start 1.50 s, read and store 4.00 s, commit 0.25 s"]


def test_a_restore_summary_is_its_outcome():
    event = RestoreEvent(request_id="r", restore_point="b2", kind="completed", at=2.0, vm_id="vm9",
                         message="restored web (b2) as VM vm9, down", outcome=RestoreOutcome(
                             duration=75.0, bytes_sent=3 * MIB, status="down", disks=["os", "data"]))
    code, text = _shown(_restore_summary, event)
    assert code == 0
    assert "sent 3.0 MiB of data in 1:15; disks: os, data; VM is down" in text
    assert "the restore point's file systems: not recorded" in text
