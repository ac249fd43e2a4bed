"""The snapshot strategy (disk image transfer) through the whole pipeline against the simulator: full and
incrementals that export exactly each snapshot's content and read only what the guest wrote (a RAW disk too, where
CBT reads it whole), user snapshots between backups, our kept snapshot removed by a user, and an engine left with at
most one snapshot of ours per VM, no open transfer, no locked disk and user snapshots untouched, whatever fails."""
from __future__ import annotations

import re
import subprocess
import sys
import time

import ovirtsdk4.types as types
import pytest

from services.snapshotter.main import SWEEP_EVERY

from .conftest import MIB, EngineView, Pipeline, module_sim, running_pipeline
from .test_cbt_backup import restore_points, sha256_file

INVENTORY = """
clusters: [{name: Default}]
storage_domains: [{name: data1}]
vms:
  - name: snap1
    status: up
    guest_agent: true
    disks:
      - name: snap1_os
        size: 64MiB
        bootable: true
        content:
          - {offset: 0, length: 8MiB, pattern: random, seed: 1}
          - {offset: 32MiB, length: 2MiB, pattern: random, seed: 2}
      - name: snap1_raw
        size: 32MiB
        format: raw
        content: [{offset: 0, length: 6MiB, pattern: random, seed: 3}]
  - name: cbtraw
    status: up
    disks:
      - name: cbtraw_raw
        size: 32MiB
        format: raw
        content: [{offset: 0, length: 6MiB, pattern: random, seed: 3}]
  - name: users
    status: up
    disks:
      - name: users_os
        size: 16MiB
        content: [{offset: 0, length: 4MiB, pattern: random, seed: 4}]
  - name: faulty
    status: up
    guest_agent: true
    disks:
      - name: faulty_os
        size: 16MiB
        content: [{offset: 0, length: 4MiB, pattern: random, seed: 5}]
"""


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    yield from module_sim(tmp_path_factory, INVENTORY)


@pytest.fixture(scope="module")
def pipeline(broker, moto_endpoint, sim, tmp_path_factory) -> Pipeline:
    """One pipeline for the module: its backups build on each other VM by VM."""
    yield from running_pipeline(broker, moto_endpoint, sim, tmp_path_factory.mktemp("snapshot-pipeline"),
                                services=("snapshotter", "reader", "writer"))


# A user's snapshot described in our form, as anyone can type it in the administration portal.
FORGED = "olvm-backup 0b6a4b47-2a5d-4d4c-9a59-0c8a1c7d1e2f (request typed by hand)"


def _ours(description: str) -> bool:
    return description.startswith("olvm-backup ") and description != FORGED


class Snapshots(EngineView):
    """The engine as an admin sees it through the SDK: each VM's snapshots, and what each transfer served."""

    def vm_id(self, vm: str) -> str:
        return self.call(lambda s: s.vms_service().list(search=f"name={vm}")[0].id)

    def snapshots(self, vm: str) -> list[types.Snapshot]:
        vm_id = self.vm_id(vm)
        return [s for s in self.call(lambda s: s.vms_service().vm_service(vm_id).snapshots_service().list())
                if s.snapshot_type != types.SnapshotType.ACTIVE]

    def ours(self, vm: str) -> list[str]:
        return [s.id for s in self.snapshots(vm) if _ours(s.description)]

    def theirs(self, vm: str) -> dict[str, str]:
        return {s.id: s.description for s in self.snapshots(vm) if not _ours(s.description)}

    def served(self) -> dict[str, int]:
        """Bytes imageio served per transfer (the daemon's own count)."""
        return self.call(lambda s: {t.id: t.transferred or 0 for t in s.image_transfers_service().list()})

    def take(self, vm: str, description: str) -> str:
        """A user's snapshot, waited for."""
        vm_id = self.vm_id(vm)

        def add(system):
            svc = system.vms_service().vm_service(vm_id).snapshots_service()
            snap = svc.add(types.Snapshot(description=description, persist_memorystate=False))
            deadline = time.monotonic() + 60
            while svc.snapshot_service(snap.id).get().snapshot_status != types.SnapshotStatus.OK:
                assert time.monotonic() < deadline, f"snapshot {description} never became ok"
                time.sleep(0.2)
            return snap.id
        return self.call(add)

    def delete(self, vm: str, snapshot_id: str) -> None:
        """A user removes a snapshot (any of them), waiting for the merge to end."""
        vm_id = self.vm_id(vm)

        def remove(system):
            svc = system.vms_service().vm_service(vm_id).snapshots_service().snapshot_service(snapshot_id)
            deadline = time.monotonic() + 120
            while True:
                try:
                    svc.remove()
                    break
                except Exception:  # locked a moment by a merge or creation
                    assert time.monotonic() < deadline
                    time.sleep(0.5)
            while True:
                try:
                    svc.get()
                except Exception:
                    return
                assert time.monotonic() < deadline
                time.sleep(0.2)
        self.call(remove)

    def grow(self, disk: str, size: int) -> None:
        """An admin extends a disk, waiting until it is no longer locked."""
        def extend(system):
            svc = system.disks_service()
            disk_id = svc.list(search=f"name={disk}")[0].id
            svc.disk_service(disk_id).update(types.Disk(provisioned_size=size))
            deadline = time.monotonic() + 60
            while svc.disk_service(disk_id).get().status != types.DiskStatus.OK:
                assert time.monotonic() < deadline, f"disk {disk} stayed locked"
                time.sleep(0.2)
        self.call(extend)

    def clean(self, vm: str, users: dict[str, str], settle: float = 15.0) -> None:
        """What every backup, failed or not, must leave: one snapshot of ours at most, user snapshots as they were,
        no open transfer, no locked disk."""
        deadline = time.monotonic() + settle
        while len(self.ours(vm)) > 1 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(self.ours(vm)) <= 1, self.snapshots(vm)
        assert self.theirs(vm) == users
        assert self.leftovers() == []


@pytest.fixture(scope="module")
def engine(sim) -> Snapshots:
    return Snapshots(sim)


def points(pipeline, vm: str) -> list[dict]:
    """The VM's restore points as `olvm-backup backups --json` prints them (listing.py), read in this process: a
    CLI process per look would cost the module a second each time."""
    import asyncio

    from olvm_backup.cli.listing import point_doc
    from olvm_backup.repository import catalog
    from olvm_backup.repository.sealedstore import open_sealed

    async def read():
        async with open_sealed(pipeline.settings) as (store, _):
            return await catalog.list_manifests(store)
    return sorted((point_doc(m) for m in asyncio.run(read()) if vm in (m.vm_id, m.vm_name)),
                  key=lambda p: p["completed_at"])


def snap_backup(pipeline, vm: str, *args: str) -> dict:
    r = pipeline.cli("backup", vm, "--strategy", "snapshot", "--wait", *args)
    assert r.returncode == 0, f"backup failed:\n{r.stdout}\n{r.stderr}"
    return points(pipeline, vm)[-1]


def exported_hash(pipeline, tmp_path, backup_id: str, disk: str) -> str:
    """What `olvm-backup export` writes of the disk (the CLI's own function, in this process: the CLI is proven in
    test_cbt_backup, and a process per export would cost this module seconds each)."""
    import asyncio

    from olvm_backup.cli.checks import export_restore_point_disk

    out = tmp_path / f"{backup_id}-{disk}.raw"
    assert asyncio.run(export_restore_point_disk(pipeline.settings, backup_id, disk, str(out))) == 0
    digest = sha256_file(out)
    out.unlink()
    return digest


def check_exports(pipeline, admin, tmp_path, point: dict, vm: str) -> dict[str, str]:
    """Each disk of the restore point exports to exactly the disk's content at its snapshot."""
    sums = {}
    for d in point["disks"]:
        sums[d["name"]] = admin.checksum(vm, d["name"], snapshot=point["snapshot_id"])
        assert exported_hash(pipeline, tmp_path, point["backup_id"], d["name"]) == sums[d["name"]], d["name"]
    return sums


def test_full_then_incrementals_read_only_what_the_guest_wrote(pipeline, admin, engine, tmp_path):
    full = snap_backup(pipeline, "snap1")
    assert restore_points(pipeline, "snap1") == [full]  # what `olvm-backup backups --json` lists
    assert full["strategy"] == "snapshot" and full["mode"] == "full" and full["snapshot_id"]
    assert engine.ours("snap1") == [full["snapshot_id"]]
    full_sums = check_exports(pipeline, admin, tmp_path, full, "snap1")
    engine.clean("snap1", {})

    # The guest writes; the next backup reads only that, from the volume layer the new snapshot froze.
    writes = [("snap1_os", 10 * MIB, 2 * MIB), ("snap1_os", 40 * MIB, 64 * 1024), ("snap1_raw", 8 * MIB, MIB)]
    for disk, offset, length in writes:
        admin.write("snap1", disk, offset, length, seed=offset)
    before = engine.served()
    inc = snap_backup(pipeline, "snap1")
    served = sum(n for t, n in engine.served().items() if t not in before)
    written = sum(n for _, _, n in writes)
    assert inc["mode"] == "incremental" and inc["parent_backup"] == full["backup_id"]
    assert {d["mode"] for d in inc["disks"]} == {"incremental"}
    assert all(len(d["layers"]) == 1 for d in inc["disks"]), inc["disks"]
    assert served <= written + 2 * MIB, (served, written)
    inc_sums = check_exports(pipeline, admin, tmp_path, inc, "snap1")
    # Each restore point stands on its own, and only the newest one's snapshot stays on the engine.
    for name, digest in full_sums.items():
        assert exported_hash(pipeline, tmp_path, full["backup_id"], name) == digest
    assert engine.ours("snap1") == [inc["snapshot_id"]]
    raw_read = {d["name"]: d["bytes_read"] for d in inc["disks"]}["snap1_raw"]

    # A zero-write (the layer holds zeros: zero, no hole) and a write of zero bytes over data: both must read back
    # as zeros, not as the parent's data; and a plain write.
    admin.write("snap1", "snap1_os", 0, MIB, zero=True)
    admin.write("snap1", "snap1_os", 4 * MIB, MIB, pattern="text", text="\0")
    admin.write("snap1", "snap1_os", 50 * MIB, 512 * 1024, seed=50)
    before = engine.served()
    inc2 = snap_backup(pipeline, "snap1")
    served = sum(n for t, n in engine.served().items() if t not in before)
    assert inc2["mode"] == "incremental" and served <= 2.5 * MIB + 2 * MIB, served
    sums = check_exports(pipeline, admin, tmp_path, inc2, "snap1")
    assert sums["snap1_os"] != inc_sums["snap1_os"]
    assert exported_hash(pipeline, tmp_path, inc["backup_id"], "snap1_os") == inc_sums["snap1_os"]
    engine.clean("snap1", {})

    # A RAW disk: CBT cannot track it and reads it whole each time; this strategy read about what was written.
    r = pipeline.cli("backup", "cbtraw", "--wait")
    assert r.returncode == 0, r.stderr
    admin.write("cbtraw", "cbtraw_raw", 8 * MIB, MIB, seed=8 * MIB)
    r = pipeline.cli("backup", "cbtraw", "--wait")
    assert r.returncode == 0, r.stderr
    cbt_read = sum(d["bytes_read"] for d in points(pipeline, "cbtraw")[-1]["disks"])
    print(f"\nRAW disk incremental after a 1 MiB write: snapshot strategy read {raw_read} bytes, CBT read "
          f"{cbt_read} bytes")
    assert raw_read <= MIB + 2 * MIB < cbt_read, (raw_read, cbt_read)


def test_user_snapshots_between_backups(pipeline, admin, engine, tmp_path):
    # In our form, but no restore point or journal of the repository names it: never removed.
    users = {engine.take("users", FORGED): FORGED}
    first = snap_backup(pipeline, "users")
    admin.write("users", "users_os", MIB, MIB, seed=11)
    upgrade = engine.take("users", "before the upgrade")
    admin.write("users", "users_os", 8 * MIB, MIB, seed=12)
    admin.write("users", "users_os", MIB + 4096, 4096, seed=13)  # the same range again, in the next layer
    admin.write("users", "users_os", MIB + 512 * 1024, 256 * 1024, zero=True)  # zeros over the first layer's data
    users[upgrade] = "before the upgrade"
    two = snap_backup(pipeline, "users")
    [disk] = two["disks"]
    assert disk["mode"] == "incremental" and len(disk["layers"]) == 2, disk
    check_exports(pipeline, admin, tmp_path, two, "users")
    engine.clean("users", users)

    # The disk grown, and a user's snapshot taken and deleted (merged) before the next backup.
    engine.grow("users_os", 24 * MIB)
    admin.write("users", "users_os", 2 * MIB, 512 * 1024, seed=14)
    admin.write("users", "users_os", 20 * MIB, 512 * 1024, seed=17)  # beyond the size the parent had
    passing = engine.take("users", "a passing snapshot")
    admin.write("users", "users_os", 12 * MIB, 512 * 1024, seed=15)
    engine.delete("users", passing)
    three = snap_backup(pipeline, "users")
    assert three["disks"][0]["mode"] == "incremental" and three["disks"][0]["size"] == 24 * MIB, three["disks"]
    check_exports(pipeline, admin, tmp_path, three, "users")
    engine.clean("users", users)

    # Our kept snapshot removed by a user: the next backup is a full that says why.
    engine.delete("users", three["snapshot_id"])
    admin.write("users", "users_os", 3 * MIB, 256 * 1024, seed=16)
    four = snap_backup(pipeline, "users")
    [disk] = four["disks"]
    assert four["mode"] == "full" and "no longer on the engine" in disk["reason"], disk
    check_exports(pipeline, admin, tmp_path, four, "users")
    engine.clean("users", users)
    assert first["backup_id"] != four["backup_id"]

    # The VM switched to CBT: once its restore point is committed, no incremental starts from our kept snapshot any
    # more, and it goes; the user's stays.
    r = pipeline.cli("backup", "users", "--wait")
    assert r.returncode == 0, r.stderr
    assert points(pipeline, "users")[-1]["strategy"] == "cbt"
    assert engine.ours("users") == [] and engine.theirs("users") == users, engine.snapshots("users")


def test_failures_leave_at_most_the_snapshot_the_last_restore_point_needs(pipeline, admin, engine, tmp_path):
    user = engine.take("faulty", "the admin's own")
    users = {user: "the admin's own"}
    kept = snap_backup(pipeline, "faulty")["snapshot_id"]

    # A transfer the engine fails, and a guest freeze that fails a backup asked quiesced: no restore point, and
    # the new snapshot is gone again.
    for fault in ("transfer-fail", "freeze-fail"):
        admin.fault(fault)
        r = pipeline.cli("backup", "faulty", "--strategy", "snapshot", "--wait")
        assert r.returncode != 0, (fault, r.stderr)
        assert engine.ours("faulty") == [kept], (fault, engine.snapshots("faulty"))
        engine.clean("faulty", users)
    assert pipeline.journals() == []
    assert points(pipeline, "faulty")[-1]["snapshot_id"] == kept

    # The engine fails to remove the older snapshot: the restore point stands, and the backup says what it left.
    admin.fault("snapshot-remove-fail")
    r = pipeline.cli("backup", "faulty", "--strategy", "snapshot", "--wait")
    assert r.returncode == 0 and "could not remove the older snapshot(s) of ours" in r.stderr, r.stderr
    assert kept in engine.ours("faulty") and len(engine.ours("faulty")) == 2

    # The VM's snapshot lock held (a user's snapshot being created): the engine answers 409 and our snapshot is
    # retried with backoff until the lock goes. The backup then also removes what the failed removal left.
    # The request is published from this process: a CLI process starting on a loaded machine may take longer than
    # the lock lasts.
    import asyncio

    from olvm_backup.cli.jobs import request_backup

    admin.fault("snapshot-hold", seconds=5)
    vm_id = engine.vm_id("faulty")
    hurried = engine.call(lambda s: s.vms_service().vm_service(vm_id).snapshots_service().add(
        types.Snapshot(description="a user's, in a hurry", persist_memorystate=False)).id)
    users[hurried] = "a user's, in a hurry"
    rc, final = asyncio.run(request_backup(pipeline.settings, "faulty", "auto", [], True, True, 300,
                                           strategy="snapshot"))
    assert rc == 0, final
    assert re.search(r"create a snapshot of VM \S+ failed \(attempt 1/\d+\), retrying in .*409",
                     (pipeline.logs / "snapshotter.log").read_text()), "the locked VM was not retried"
    latest = points(pipeline, "faulty")[-1]
    assert engine.ours("faulty") == [latest["snapshot_id"]]
    engine.clean("faulty", users)
    assert pipeline.cli("verify", latest["backup_id"]).returncode == 0

    # The engine made our snapshot but its answer was lost: the retry finds it instead of asking for a twin.
    admin.fault("answer-lost")
    latest = snap_backup(pipeline, "faulty")
    asked = engine.call(lambda s: [e.description for e in s.events_service().list(max=10000)
                                   if e.code == 45 and latest["backup_id"] in (e.description or "")])
    assert len(asked) == 1, asked  # "Snapshot '...' creation for VM ... was initiated"
    assert engine.ours("faulty") == [latest["snapshot_id"]]
    engine.clean("faulty", users)

    # The snapshotter killed (SIGKILL) while its snapshot exists: the next one removes it and runs the request again.
    admin.write("faulty", "faulty_os", 0, MIB, seed=21)
    proc = subprocess.Popen([sys.executable, "-m", "olvm_backup.cli.main", "backup", "faulty", "--strategy",
                             "snapshot", "--wait"], env=pipeline.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    while len(engine.ours("faulty")) < 2:
        assert time.monotonic() < deadline and proc.poll() is None, "the backup never made its snapshot"
        time.sleep(0.05)
    pipeline.processes.pop("snapshotter").kill()
    pipeline.start("snapshotter", "snapshotter")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "was interrupted (its snapshotter stopped)" in err, err
    last = points(pipeline, "faulty")[-1]
    check_exports(pipeline, admin, tmp_path, last, "faulty")
    engine.clean("faulty", users, settle=SWEEP_EVERY + 30)
    assert engine.ours("faulty") == [last["snapshot_id"]]
