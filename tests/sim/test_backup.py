"""Incremental backup as backup_vm.py does it: full backup, guest writes, incremental backup, checkpoints.

The tests in this module build on each other (full → incremental → checkpoints) and run in file order."""
from __future__ import annotations

import json

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
from ovirt_imageio import client

from .conftest import (MIB, create_transfer, disk_status, finalize_transfer, qemu_img, raw_sha256, vm_by_name,
                       vm_disks, wait_disk_ok, wait_gone, wait_phase)

DISKS = ("web1_os", "web1_data")
# Guest writes between the full and the incremental backup: (disk, offset, length, seed).
WRITES = [("web1_os", 2 * MIB, 1 * MIB, 7), ("web1_os", 40 * MIB, 64 * 1024, 8), ("web1_data", 8 * MIB, 128 * 1024, 9)]


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    """What the earlier tests of this module leave for the later ones."""
    return {"dir": tmp_path_factory.mktemp("backups")}


def backups_service(connection, vm):
    return connection.system_service().vms_service().vm_service(vm.id).backups_service()


def wait_ready(svc, timeout=60) -> types.Backup:
    seen = []
    b = wait_phase(svc.get, {types.BackupPhase.READY, types.BackupPhase.FAILED}, timeout=timeout,
                   what="backup ready", seen=seen)
    assert b.phase == types.BackupPhase.READY, f"backup failed; phases seen: {seen}"
    assert None not in seen, f"unknown backup phase value (wrong case?): {seen}"
    return b


def finalize_backup(svc, timeout=60) -> types.Backup:
    svc.finalize()
    seen = []
    b = wait_phase(svc.get, {types.BackupPhase.SUCCEEDED, types.BackupPhase.FAILED}, timeout=timeout,
                   what="backup succeeded", seen=seen)
    assert b.phase == types.BackupPhase.SUCCEEDED, f"phases after finalize: {seen}"
    return b


def download_transfer(connection, disk_id, backup_id) -> types.ImageTransfer:
    t = create_transfer(connection, disk=types.Disk(id=disk_id), backup=types.Backup(id=backup_id),
                        direction=types.ImageTransferDirection.DOWNLOAD)
    assert t.phase == types.ImageTransferPhase.TRANSFERRING, f"transfer {t.id} is {t.phase}"
    assert t.transfer_url and t.host is not None and t.host.id
    return t


def test_full_backup(sim, connection, state):
    web1 = vm_by_name(connection, "web1")
    disks = vm_disks(connection, web1)
    assert sorted(disks) == sorted(DISKS)
    state["vm"], state["disks"] = web1, disks

    backups = backups_service(connection, web1)
    backup = backups.add(types.Backup(disks=[types.Disk(id=d.id) for d in disks.values()]))
    assert backup.id
    assert backup.vm is not None and backup.vm.id == web1.id
    svc = backups.backup_service(backup.id)
    backup = wait_ready(svc)
    assert backup.to_checkpoint_id, "a full backup of qcow2 disks creates a checkpoint"
    assert not backup.from_checkpoint_id
    assert backup.vm.id == web1.id
    state["cp1"] = backup.to_checkpoint_id

    # While the backup runs its disks are locked ...
    for d in disks.values():
        assert disk_status(connection, d.id) == types.DiskStatus.LOCKED, d.name
    # ... and a second backup of the same VM is refused.
    with pytest.raises(sdk.Error) as e:
        backups.add(types.Backup(disks=[types.Disk(id=d.id) for d in disks.values()]))
    assert e.value.code in (400, 409), e.value

    modes = {d.id: d.backup_mode for d in svc.disks_service().list()}
    assert modes == {d.id: types.DiskBackupMode.FULL for d in disks.values()}

    for name, d in disks.items():
        t = download_transfer(connection, d.id, backup.id)
        dest = state["dir"] / f"{name}.full.qcow2"
        client.download(t.transfer_url, str(dest), sim.ca_file, proxy_url=t.proxy_url)
        finalize_transfer(connection, t)
        info = json.loads(qemu_img("info", "--output", "json", str(dest)).stdout)
        assert info["format"] == "qcow2" and info["virtual-size"] == d.provisioned_size
        state[f"{name}.full"] = dest

    done = finalize_backup(svc)
    assert done.to_checkpoint_id == state["cp1"]
    for d in disks.values():
        wait_disk_ok(connection, d.id, timeout=30)

    # The backup is the disks' content.
    for name in disks:
        assert raw_sha256(state[f"{name}.full"], state["dir"]) == sim.checksum("web1", name), name


def test_backup_stays_readable_after_finalize(connection, state):
    if "cp1" not in state:
        pytest.skip("needs the full backup")
    backups = backups_service(connection, state["vm"]).list()
    assert any(b.to_checkpoint_id == state["cp1"] and b.phase == types.BackupPhase.SUCCEEDED for b in backups)


def test_incremental_backup(sim, connection, state):
    if "cp1" not in state:
        pytest.skip("needs the full backup")
    web1, disks = state["vm"], state["disks"]
    before = {name: sim.checksum("web1", name) for name in disks}
    for disk, offset, length, seed in WRITES:
        sim.write("web1", disk, offset, length, seed)
    after = {name: sim.checksum("web1", name) for name in disks}
    assert all(before[n] != after[n] for n in disks), "guest writes did not change the disks"

    backups = backups_service(connection, web1)
    backup = backups.add(types.Backup(from_checkpoint_id=state["cp1"],
                                      disks=[types.Disk(id=d.id) for d in disks.values()]))
    svc = backups.backup_service(backup.id)
    backup = wait_ready(svc)
    assert backup.from_checkpoint_id == state["cp1"]
    assert backup.to_checkpoint_id and backup.to_checkpoint_id != state["cp1"]
    state["cp2"] = backup.to_checkpoint_id

    modes = {d.id: d.backup_mode for d in svc.disks_service().list()}
    assert modes == {d.id: types.DiskBackupMode.INCREMENTAL for d in disks.values()}

    for name, d in disks.items():
        t = download_transfer(connection, d.id, backup.id)
        with client.ImageioClient(t.transfer_url, cafile=sim.ca_file, proxy_url=t.proxy_url) as c:
            assert c.size() == d.provisioned_size
            extents = list(c.extents("dirty"))
        # Dirty extents are contiguous, cover the disk, and the dirty ones cover what the guest wrote.
        assert extents[0].start == 0
        for a, b in zip(extents, extents[1:], strict=False):
            assert a.start + a.length == b.start
        assert extents[-1].start + extents[-1].length == d.provisioned_size
        dirty = [(e.start, e.start + e.length) for e in extents if e.dirty]
        for disk, offset, length, _ in WRITES:
            if disk != name:
                continue
            covered = sum(max(0, min(end, offset + length) - max(start, offset)) for start, end in dirty)
            assert covered == length, f"{name}: write at {offset}+{length} not covered by dirty extents {dirty}"
        total = sum(end - start for start, end in dirty)
        assert 0 < total < 4 * MIB, f"{name}: {total} dirty bytes for a few small writes: {dirty}"

        dest = state["dir"] / f"{name}.incr.qcow2"
        client.download(t.transfer_url, str(dest), sim.ca_file, proxy_url=t.proxy_url, incremental=True,
                        backing_file=str(state[f"{name}.full"]), backing_format="qcow2")
        finalize_transfer(connection, t)
        info = json.loads(qemu_img("info", "--output", "json", str(dest)).stdout)
        assert info.get("backing-filename") == str(state[f"{name}.full"])
        # Only the changed blocks travelled: the incremental file is far smaller than the full one.
        assert dest.stat().st_size < state[f"{name}.full"].stat().st_size or dest.stat().st_size < 2 * MIB
        # Rebased on the full backup it is the disk as it is now.
        assert raw_sha256(dest, state["dir"]) == after[name], name

    finalize_backup(svc)
    for d in disks.values():
        wait_disk_ok(connection, d.id, timeout=30)


def test_checkpoints(connection, state):
    if "cp2" not in state:
        pytest.skip("needs the incremental backup")
    checkpoints = connection.system_service().vms_service().vm_service(state["vm"].id).checkpoints_service()
    by_id = {c.id: c for c in checkpoints.list()}
    assert {state["cp1"], state["cp2"]} <= set(by_id)
    assert by_id[state["cp2"]].parent_id == state["cp1"]
    for c in by_id.values():
        assert c.creation_date is not None and c.creation_date.tzinfo is not None
        assert c.state == types.CheckpointState.CREATED
    assert checkpoints.checkpoint_service(state["cp1"]).get().id == state["cp1"]

    checkpoints.checkpoint_service(state["cp1"]).remove()
    wait_gone(checkpoints.checkpoint_service(state["cp1"]).get, timeout=60, what="the removed checkpoint to go")
    remaining = {c.id for c in checkpoints.list()}
    assert state["cp1"] not in remaining and state["cp2"] in remaining


def test_incremental_from_unknown_checkpoint_is_refused(connection, state):
    if "disks" not in state:
        pytest.skip("needs the full backup")
    backups = backups_service(connection, state["vm"])
    with pytest.raises(sdk.Error) as e:
        backups.add(types.Backup(from_checkpoint_id="00000000-0000-0000-0000-0000000000cc",
                                 disks=[types.Disk(id=d.id) for d in state["disks"].values()]))
    assert e.value.code in (400, 404, 409), e.value
    for d in state["disks"].values():
        assert disk_status(connection, d.id) == types.DiskStatus.OK


def test_backup_of_a_down_vm_with_a_raw_disk(sim, connection, state):
    """db1 is down and its only disk is raw: the backup is full and the download is the disk."""
    db1 = vm_by_name(connection, "db1")
    disks = vm_disks(connection, db1)
    assert list(disks) == ["db1_disk"]
    d = disks["db1_disk"]
    backups = backups_service(connection, db1)
    backup = backups.add(types.Backup(disks=[types.Disk(id=d.id)]))
    svc = backups.backup_service(backup.id)
    backup = wait_ready(svc)
    assert [x.backup_mode for x in svc.disks_service().list()] == [types.DiskBackupMode.FULL]
    t = download_transfer(connection, d.id, backup.id)
    dest = state["dir"] / "db1_disk.full.qcow2"
    client.download(t.transfer_url, str(dest), sim.ca_file, proxy_url=t.proxy_url)
    finalize_transfer(connection, t)
    finalize_backup(svc)
    wait_disk_ok(connection, d.id, timeout=30)
    assert raw_sha256(dest, state["dir"]) == sim.checksum("db1", "db1_disk")


def test_backup_events_name_the_backup(connection, state):
    """backup_vm.py looks events up by the backup id."""
    web1 = state.get("vm")
    if web1 is None:
        pytest.skip("needs the full backup")
    backups = backups_service(connection, web1).list()
    assert backups
    bid = backups[0].id
    events = connection.system_service().events_service().list(search=bid)
    assert events, f"no event mentions backup {bid}"
    assert all(bid in (e.description or "") for e in events)
