"""CBT backups through the whole pipeline (snapshotter, readers, writers as processes) against the simulator:
full, incremental, dedup, exclusions, hot-added disks, reader failover, and a clean engine whatever happens."""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time

import ovirtsdk4.types as types
import pytest

from .conftest import IMAGEIO_LOGGED, IMAGEIO_PATH

MIB = 1024 * 1024


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 * MIB):
            h.update(block)
    return h.hexdigest()


def backup(pipeline, vm: str, *args: str):
    r = pipeline.cli("backup", vm, "--wait", *args)
    assert r.returncode == 0, f"backup failed:\n{r.stdout}\n{r.stderr}"
    return r


def restore_points(pipeline, vm: str) -> list[dict]:
    r = pipeline.cli("backups", vm, "--json")
    assert r.returncode == 0, r.stderr
    return sorted(json.loads(r.stdout), key=lambda p: p["completed_at"])


def exported_hash(pipeline, tmp_path, backup_id: str, disk: str) -> str:
    out = tmp_path / f"{backup_id}-{disk}.raw"
    r = pipeline.cli("export", backup_id, "--disk", disk, "--output", str(out))
    assert r.returncode == 0, r.stderr
    digest = sha256_file(out)
    out.unlink()
    return digest


def disks_of(point: dict) -> dict[str, dict]:
    return {d["name"]: d for d in point["disks"]}


@pytest.mark.data_path
def test_full_then_incremental_then_dedup(pipeline, admin, engine_view, tmp_path):
    backup(pipeline, "app1", "--mode", "full", "--exclude", "app1_scratch")
    [full] = restore_points(pipeline, "app1")
    assert set(disks_of(full)) == {"app1_os", "app1_data"}, "excluded disk must not be in the manifest"
    assert "app1_scratch" in str(full["excluded_disks"]) or full["excluded_disks"]
    before = {d: admin.checksum("app1", d) for d in ("app1_os", "app1_data")}
    for disk, digest in before.items():
        assert exported_hash(pipeline, tmp_path, full["backup_id"], disk) == digest
    assert engine_view.leftovers() == []

    # The guest writes: 8 MiB and 1 MiB on the big disk, 64 KiB on the small one.
    writes = [("app1_os", 100 * MIB, 8 * MIB), ("app1_os", 700 * MIB, MIB), ("app1_data", 20 * MIB, 64 * 1024)]
    for disk, offset, length in writes:
        admin.write("app1", disk, offset, length, seed=offset)
    started = time.monotonic()
    summary = backup(pipeline, "app1", "--exclude", "app1_scratch").stderr
    took = time.monotonic() - started
    full, inc = restore_points(pipeline, "app1")
    # The summary says where the time went, step by step, in the order the steps ran.
    [line] = [ln for ln in summary.splitlines() if ln.strip().startswith("time:")]
    steps = {name: float(value) for name, value in re.findall(r"([a-z][a-z -]*?) ([0-9.]+) s", line.split(":", 1)[1])}
    assert list(steps) == ["prepare", "engine start", "open transfers", "extents", "read and store",
                           "engine release", "commit"], line
    # All but the engine's release run one after another (it overlaps the sealing of the last packs).
    assert 0 < sum(v for k, v in steps.items() if k != "engine release") <= took, (line, took)
    (tmp_path / "points.json").write_text(json.dumps([full, inc], indent=1))
    assert inc["mode"] == "incremental" and inc["from_checkpoint"] == full["to_checkpoint"], (full, inc)
    assert {d["mode"] for d in inc["disks"]} == {"incremental"}
    after = {d: admin.checksum("app1", d) for d in ("app1_os", "app1_data")}
    for disk, digest in after.items():
        assert exported_hash(pipeline, tmp_path, inc["backup_id"], disk) == digest
        # Each restore point stands on its own: the full still gives the old content.
        assert exported_hash(pipeline, tmp_path, full["backup_id"], disk) == before[disk]
    written = sum(length for _, _, length in writes)
    # Only dirty extents were read: imageio's own count, and ours (bitmap granularity is 64 KiB).
    assert engine_view.transferred(inc["backup_id"]) <= written + 2 * MIB
    assert sum(d["bytes_read"] for d in inc["disks"]) <= written + 2 * MIB
    assert sum(d["bytes_new"] for d in inc["disks"]) <= written + 2 * MIB
    assert engine_view.transferred(full["backup_id"]) >= 100 * MIB

    # A second full of the unchanged VM reads everything and stores (almost) nothing new.
    backup(pipeline, "app1", "--mode", "full", "--exclude", "app1_scratch")
    full2 = restore_points(pipeline, "app1")[-1]
    assert full2["mode"] == "full"
    assert sum(d["bytes_read"] for d in full2["disks"]) >= 100 * MIB
    assert sum(d["bytes_new"] for d in full2["disks"]) <= MIB
    assert engine_view.leftovers() == []
    # Chunks went through one topic per wave, each deleted once stored: the broker keeps none of them.
    waves = set(re.findall(r"deleted topics (\S+)", (pipeline.logs / "snapshotter.log").read_text()))
    assert len(waves) >= 6, f"expected several waves per full backup, saw {sorted(waves)}"
    assert pipeline.chunk_topics() == []
    # Every task read its data the way this run asked (OLVM_TEST_IMAGEIO).
    assert pipeline.data_paths("reader") == {IMAGEIO_LOGGED[IMAGEIO_PATH]}


def test_hot_added_disk_is_backed_up_full(pipeline, admin, engine_view, tmp_path):
    backup(pipeline, "app1", "--exclude", "app1_scratch")

    def add_disk(system):
        disk = system.disks_service().add(types.Disk(
            name="app1_hot", provisioned_size=16 * MIB, format=types.DiskFormat.COW, sparse=True,
            backup=types.DiskBackup.INCREMENTAL, storage_domains=[types.StorageDomain(name="data1")]))
        deadline = time.monotonic() + 60
        while system.disks_service().disk_service(disk.id).get().status != types.DiskStatus.OK:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        vm = system.vms_service().list(search="name=app1")[0]
        system.vms_service().vm_service(vm.id).disk_attachments_service().add(types.DiskAttachment(
            disk=types.Disk(id=disk.id), interface=types.DiskInterface.VIRTIO, bootable=False, active=True))
    engine_view.call(add_disk)
    admin.write("app1", "app1_hot", 0, 2 * MIB, seed=99)
    admin.write("app1", "app1_data", 0, 64 * 1024, seed=98)
    backup(pipeline, "app1", "--exclude", "app1_scratch")
    second = restore_points(pipeline, "app1")[-1]
    modes = {name: d["mode"] for name, d in disks_of(second).items()}
    assert modes == {"app1_os": "incremental", "app1_data": "incremental", "app1_hot": "full"}
    assert disks_of(second)["app1_hot"]["reason"], "a full disk in an incremental backup says why"
    for disk in ("app1_hot", "app1_data", "app1_os"):
        assert exported_hash(pipeline, tmp_path, second["backup_id"], disk) == admin.checksum("app1", disk)
    assert engine_view.leftovers() == []


@pytest.mark.data_path
def test_two_readers_share_a_disk_and_survive_a_kill(pipeline, admin, engine_view, tmp_path):
    pipeline.stop("reader")
    pipeline.env["OLVM_TASK_SIZE"] = str(16 * MIB)
    pipeline.stop("snapshotter")
    pipeline.start("snapshotter", "snapshotter")
    pipeline.start("reader-1", "reader")
    second = pipeline.start("reader-2", "reader")
    log2 = pipeline.logs / "reader-2.log"
    proc = subprocess.Popen([sys.executable, "-m", "olvm_backup.cli.main", "backup", "big1", "--wait"],
                            env=pipeline.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while "reading disk" not in (log2.read_text() if log2.exists() else ""):
        assert time.monotonic() < deadline and proc.poll() is None, "reader-2 never got a task"
        time.sleep(0.05)
    second.kill()          # SIGKILL mid-task
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, f"{out}\n{err}"
    [point] = restore_points(pipeline, "big1")
    assert exported_hash(pipeline, tmp_path, point["backup_id"], "big1_disk") == admin.checksum("big1", "big1_disk")
    log1 = (pipeline.logs / "reader-1.log").read_text()
    assert log1.count("reading disk") >= 2, "reader-1 took over the remaining tasks"
    assert engine_view.leftovers() == []


def imageio_connections_peak(daemon_log, start: int) -> int:
    """Most data connections the host's imageio daemon held at once after byte `start` of its log, from its own
    OPEN and CLOSE lines. A data connection is one that read (its CLOSE line counts read ops), over TLS or over
    the local socket alike; the control socket's (tickets) and the readers' probes read nothing."""
    with open(daemon_log) as f:
        f.seek(start)
        lines = f.readlines()
    readers = {m[1] for line in lines if (m := re.search(r"\[http\] CLOSE connection=(\d+) .*\[read ", line))}
    held, peak = set(), 0
    for line in lines:
        if (m := re.search(r"\[http\] (OPEN|CLOSE) connection=(\d+) ", line)) and m[2] in readers:
            (held.add if m[1] == "OPEN" else held.discard)(m[2])
            peak = max(peak, len(held))
    return peak


def test_readers_together_stay_within_the_tickets_connections(pipeline, admin, sim, engine_view, tmp_path):
    # Four readers on one disk, four of its tasks at once. imageio (OPTIONS max_readers) and the host's NBD server
    # serve a ticket over at most 8 connections; a ninth waits, and tasks holding connections while waiting on
    # their last one used to stall each other until a keep-alive or a socket timeout ran out.
    pipeline.stop("reader")
    pipeline.env["OLVM_TASK_SIZE"] = str(16 * MIB)
    pipeline.stop("snapshotter")
    pipeline.start("snapshotter", "snapshotter")
    for n in range(1, 5):
        pipeline.start(f"reader-{n}", "reader")
    daemon_log = sim.data / "imageio" / "host" / "daemon.log"
    start = daemon_log.stat().st_size
    backup(pipeline, "big1")
    assert re.search(r"imageio allows 8 readers, 4 read tasks at once: 2 connections per task",
                     (pipeline.logs / "snapshotter.log").read_text())
    peak = imageio_connections_peak(daemon_log, start)
    # 4 tasks x 2 connections; one more at most, when the daemon logs a closed connection only after the reader's
    # next task opened its first (without the budget: 4 x 4, plus each reader's extents connection kept alive).
    assert 2 <= peak <= 8 + 1, f"readers held {peak} connections to the ticket at once"
    busy = [n for n in range(1, 5) if "reading disk" in (pipeline.logs / f"reader-{n}.log").read_text()]
    assert len(busy) >= 2, f"the disk's tasks went to readers {busy} only"
    [point] = restore_points(pipeline, "big1")
    assert exported_hash(pipeline, tmp_path, point["backup_id"], "big1_disk") == admin.checksum("big1", "big1_disk")
    assert engine_view.leftovers() == []


def test_failures_and_cancellation_leave_the_engine_clean(pipeline, admin, engine_view, tmp_path):
    # The engine fails the next transfer: the backup fails with a reason, nothing stays open.
    admin.fault("transfer-fail")
    r = pipeline.cli("backup", "app1", "--wait", "--exclude", "app1_scratch")
    assert r.returncode != 0
    assert "fail" in (r.stdout + r.stderr).lower()
    assert engine_view.leftovers() == []
    assert restore_points(pipeline, "app1") == [], "a failed backup is no restore point"

    # The snapshotter is stopped mid-backup (SIGTERM): it closes what it opened. The backup is interrupted, not
    # failed: its request was not committed, so it runs again from the start once a snapshotter is back, and
    # `--wait` follows it to that run's end, its one final event.
    stopped = subprocess.Popen([sys.executable, "-m", "olvm_backup.cli.main", "backup", "big1", "--wait",
                                "--mode", "full"], env=pipeline.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    _wait_for_log(pipeline.logs / "reader.log", "reading disk")
    pipeline.stop("snapshotter")
    assert engine_view.leftovers() == []
    assert stopped.poll() is None, "the CLI took an interrupted backup for finished"
    snap = pipeline.start("snapshotter", "snapshotter")
    _, stopped_err = stopped.communicate(timeout=600)
    assert stopped.returncode == 0, stopped_err
    assert "interrupted: the snapshotter is stopping" in stopped_err, stopped_err

    # Killed (SIGKILL) mid-backup: the next snapshotter finds what it left and closes it, says so, and the
    # request runs again to its one final event.
    seen = (pipeline.logs / "reader.log").read_text().count("reading disk")
    killed = subprocess.Popen([sys.executable, "-m", "olvm_backup.cli.main", "backup", "big1", "--wait",
                               "--mode", "full"], env=pipeline.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    _wait_for_log(pipeline.logs / "reader.log", "reading disk", after=seen + 1)
    snap.kill()
    assert engine_view.leftovers(settle=1.0) != [], "the killed snapshotter left its backup open"
    pipeline.processes.pop("snapshotter")
    pipeline.start("snapshotter", "snapshotter")
    _, killed_err = killed.communicate(timeout=600)
    assert killed.returncode == 0, killed_err
    assert "was interrupted (its snapshotter stopped)" in killed_err, killed_err
    assert engine_view.leftovers(settle=60) == []
    # The stopped and the killed backup's chunk topics: deleted when it stopped, or by the next snapshotter
    # (which also sweeps away one that a reader, still publishing, brought back on a create-on-produce broker).
    assert pipeline.chunk_topics(settle=60) == [], "the chunk topics of stopped backups were not deleted"
    # One request, one final event: what the CLI said is what the audit trail says.
    events = pipeline.backup_events()
    for cli_err in (stopped_err, killed_err):
        request_id = re.search(r"requested: (\S+)", cli_err).group(1)
        assert [e.kind for e in events[request_id] if e.kind in ("completed", "failed", "cancelled")] == \
            ["completed"], [(e.kind, e.message) for e in events[request_id]]


def test_a_quiesced_backup_requires_the_freeze_unless_told_otherwise(pipeline, admin, engine_view):
    # app1 runs with a guest agent. Its file systems cannot be frozen this time: a quiesced backup (the default)
    # fails, says why and what to do, and leaves nothing behind.
    admin.fault("freeze-fail")
    r = pipeline.cli("backup", "app1", "--wait", "--exclude", "app1_scratch")
    assert r.returncode != 0
    assert "frozen" in r.stderr and "--no-quiesce" in r.stderr, r.stderr
    assert engine_view.leftovers() == []
    assert restore_points(pipeline, "app1") == [], "a failed backup is no restore point"

    # With --no-quiesce the same failure only costs the freeze, and the summary says so (from the engine's events).
    admin.fault("freeze-fail")
    r = backup(pipeline, "app1", "--no-quiesce", "--exclude", "app1_scratch")
    assert "consistency: crash-consistent: the engine could not freeze" in r.stderr, r.stderr
    # With a guest that freezes, either way says it was frozen.
    r = backup(pipeline, "app1", "--no-quiesce", "--exclude", "app1_scratch")
    assert "consistency: guest file systems frozen by the engine for the checkpoint\n" in r.stderr, r.stderr
    r = backup(pipeline, "app1", "--exclude", "app1_scratch")
    assert "consistency: guest file systems frozen by the engine for the checkpoint (required)" in r.stderr, r.stderr
    # Each restore point keeps what it was: the catalog lists it.
    assert [p["consistency"] for p in restore_points(pipeline, "app1")] == ["crash-consistent", "frozen", "frozen"]
    assert engine_view.leftovers() == []


def test_a_backup_the_engine_ends_failed_is_no_restore_point(pipeline, admin, engine_view):
    # Everything read and stored, but the engine ends the backup failed and drops its checkpoint: a restore point
    # naming that checkpoint would send the next incremental to one the engine no longer has.
    admin.fault("backup-finalize-fail")
    r = pipeline.cli("backup", "app1", "--wait", "--exclude", "app1_scratch")
    assert r.returncode != 0, r.stdout
    assert "the engine ended backup" in r.stdout + r.stderr and "not committed" in r.stdout + r.stderr, r.stdout
    assert restore_points(pipeline, "app1") == []
    assert engine_view.leftovers() == []
    assert pipeline.chunk_topics(settle=30) == []


def _wait_for_log(path, text: str, after: int = 1, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while (path.read_text() if path.exists() else "").count(text) < after:
        assert time.monotonic() < deadline, f"{path.name} never logged {text!r}"
        time.sleep(0.05)


def test_a_second_snapshotter_leaves_a_running_backup_alone(pipeline, engine_view):
    """Snapshotters close abandoned backups when they start: a backup another live one runs is not abandoned."""
    seen = (pipeline.logs / "reader.log").read_text().count("reading disk")
    proc = subprocess.Popen([sys.executable, "-m", "olvm_backup.cli.main", "backup", "big1", "--wait"],
                            env=pipeline.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_log(pipeline.logs / "reader.log", "reading disk", after=seen + 1)
    pipeline.start("snapshotter2", "snapshotter")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"the running backup was disturbed:\n{out}\n{err}"
    assert "cleaning up after interrupted backup" not in (pipeline.logs / "snapshotter2.log").read_text()
    assert engine_view.leftovers() == []
