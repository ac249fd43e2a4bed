"""An imageio ticket that goes away mid-backup (it expired, or was removed on the host): readers tell the
snapshotter at once, which re-opens the disk's transfer and sends its unfinished tasks again, and the backup
completes with a restore point equal to the guest's disk; or, when no other transfer can be opened, the backup
fails within seconds naming the disk and the ticket, not at the stall timeout blaming readers and writers. Either
way the engine is left clean and the next backup succeeds."""
from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from olvm_backup.config import PipelineSettings

from .test_cbt_backup import backup, exported_hash, restore_points

MIB = 1024 * 1024
STALL_TIMEOUT = PipelineSettings().stall_timeout  # what the backup waited for before: 300 s


def start_backup(pipeline, vm: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "olvm_backup.cli.main", "backup", vm, "--wait"],
                            env=pipeline.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_reading(pipeline, proc: subprocess.Popen, tasks: int = 2) -> None:
    """Until the reader has started `tasks` more read tasks: the backup's transfer is open and being read."""
    log = pipeline.logs / "reader.log"
    seen = log.read_text().count("reading disk") if log.exists() else 0
    deadline = time.monotonic() + 180
    while (log.read_text().count("reading disk") if log.exists() else 0) < seen + tasks:
        assert time.monotonic() < deadline and proc.poll() is None, "the backup never started reading"
        time.sleep(0.05)


def small_tasks(pipeline) -> None:
    # 16 MiB tasks: big1's disk makes 128 of them, so the ticket goes while most are still to read.
    pipeline.stop("snapshotter")
    pipeline.env["OLVM_TASK_SIZE"] = str(16 * MIB)
    pipeline.start("snapshotter", "snapshotter")


def backup_transfers(engine_view) -> dict[str, str]:
    """Every image transfer the engine knows of big1's disk: id -> phase."""
    def scan(system):
        return {t.id: t.phase.value for t in system.image_transfers_service().list()}
    return engine_view.call(scan)


@pytest.mark.data_path
def test_a_lost_ticket_is_reopened_and_the_backup_completes(pipeline, admin, engine_view, tmp_path):
    small_tasks(pipeline)
    proc = start_backup(pipeline, "big1")
    wait_reading(pipeline, proc)
    admin.fault("ticket-expire")
    lost_at = time.monotonic()
    out, err = proc.communicate(timeout=2 * STALL_TIMEOUT)
    took = time.monotonic() - lost_at
    assert proc.returncode == 0, f"the backup failed {took:.0f}s after the ticket went:\n{out}\n{err}"
    assert re.search(r"disk big1_disk: imageio ticket [\w-]+ of transfer [\w-]+ is gone; opened transfer [\w-]+ "
                     r"and sent its \d+ unfinished read task\(s\) again", out + err), out + err
    assert took < STALL_TIMEOUT / 2, f"the backup took {took:.0f}s after the ticket went"
    [point] = restore_points(pipeline, "big1")
    assert exported_hash(pipeline, tmp_path, point["backup_id"], "big1_disk") == admin.checksum("big1", "big1_disk")
    assert engine_view.leftovers() == []
    # The next backup builds on this one.
    admin.write("big1", "big1_disk", offset=4 * MIB, length=MIB, seed=31)
    backup(pipeline, "big1")
    points = restore_points(pipeline, "big1")
    assert len(points) == 2 and points[-1]["mode"] == "incremental"
    assert exported_hash(pipeline, tmp_path, points[-1]["backup_id"], "big1_disk") == \
        admin.checksum("big1", "big1_disk")
    assert engine_view.leftovers() == []


def test_a_lost_ticket_that_cannot_be_reopened_fails_the_backup_within_seconds(pipeline, admin, engine_view):
    small_tasks(pipeline)
    proc = start_backup(pipeline, "big1")
    wait_reading(pipeline, proc)
    admin.fault("transfer-fail")  # the engine fails the next transfer: the one that would replace the lost one
    admin.fault("ticket-expire")
    lost_at = time.monotonic()
    try:
        out, err = proc.communicate(timeout=STALL_TIMEOUT / 2)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the backup did not end within {STALL_TIMEOUT / 2:.0f}s of its ticket going:\n"
                             f"{out}") from None
    took = time.monotonic() - lost_at
    assert proc.returncode != 0, out
    said = re.search(r"disk big1_disk: imageio ticket ([\w-]+) of transfer ([\w-]+) is gone, and no other "
                     r"transfer could be opened", out + err)
    assert said, out + err
    assert "readers and writers" not in out + err
    assert said[2] in backup_transfers(engine_view), "the message names a transfer the engine does not know"
    assert took < 60, f"the backup failed {took:.0f}s after its ticket went"
    assert engine_view.leftovers() == []
    assert restore_points(pipeline, "big1") == [], "a failed backup is no restore point"
    backup(pipeline, "big1")
    assert len(restore_points(pipeline, "big1")) == 1
    assert engine_view.leftovers() == []
