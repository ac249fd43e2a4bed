"""The engine's disk actions that give space back (issue 17, item 5): POST /disks/{id}/sparsify and
POST /disks/{id}/reduce, as a client calls them through ovirtsdk4 (DiskService.sparsify() / .reduce()).

The guest view is read with `olvm-sim checksum`; the space a disk takes is the engine's `disk.actual_size` (bytes
allocated), read through the SDK."""
from __future__ import annotations

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from .conftest import MIB, wait_disk_ok, wait_for

VM = "dact1"


@pytest.fixture(scope="module")
def vm(connection):
    vms = connection.system_service().vms_service()
    vm = vms.add(types.Vm(name=VM, cluster=types.Cluster(name="Default"), memory=512 * MIB))
    yield vm
    power(connection, vm, "stop")
    vms.vm_service(vm.id).remove()


def power(connection, vm, action: str) -> None:
    """start / stop the VM and wait until it is up / down (a VM that is already there is left alone)."""
    svc = connection.system_service().vms_service().vm_service(vm.id)
    want = types.VmStatus.UP if action == "start" else types.VmStatus.DOWN
    if svc.get().status != want:
        getattr(svc, action)()
    wait_for(svc.get, lambda v: v.status == want, what=f"{vm.name} {want.value}")


def add_disk(connection, vm, name: str, fmt: types.DiskFormat, size: int = 32 * MIB, **kw) -> types.Disk:
    atts = connection.system_service().vms_service().vm_service(vm.id).disk_attachments_service()
    att = atts.add(types.DiskAttachment(
        disk=types.Disk(name=name, provisioned_size=size, format=fmt, sparse=True,
                        storage_domains=[types.StorageDomain(name="data1")], **kw),
        interface=types.DiskInterface.VIRTIO_SCSI, bootable=False, active=True))
    return wait_disk_ok(connection, att.disk.id)


def fill(sim, connection, vm, disk: types.Disk) -> None:
    """As a guest: 16 MiB of data, then 8 MiB of it zeroed (a file deleted and trimmed, or wiped), VM down after."""
    power(connection, vm, "start")
    sim.write(VM, disk.name, 0, 16 * MIB, seed=7)
    sim.cli("write", VM, disk.name, "--offset", str(4 * MIB), "--length", str(8 * MIB), "--zero")
    power(connection, vm, "stop")


def disk_service(connection, disk_id: str):
    return connection.system_service().disks_service().disk_service(disk_id)


def events(connection, codes: set[int]) -> list[types.Event]:
    return [e for e in connection.system_service().events_service().list(max=500) if e.code in codes]


def run_action(connection, disk_id: str, verb: str) -> types.Disk:
    """The action, then the disk polled until it is ok again (it is locked while the host works)."""
    svc = disk_service(connection, disk_id)
    getattr(svc, verb)()
    return wait_for(svc.get, lambda d: d.status == types.DiskStatus.OK, what=f"disk {disk_id} ok after {verb}")


@pytest.mark.parametrize("fmt", [types.DiskFormat.COW, types.DiskFormat.RAW])
def test_sparsify_gives_zeroed_space_back_and_keeps_the_content(sim, connection, vm, fmt):
    disk = add_disk(connection, vm, f"dact1_sp_{fmt.value}", fmt)
    fill(sim, connection, vm, disk)
    before = sim.checksum(VM, disk.name)
    allocated = disk_service(connection, disk.id).get().actual_size
    assert allocated >= 15 * MIB, f"the guest wrote 16 MiB, the disk has {allocated} bytes allocated"

    svc = disk_service(connection, disk.id)
    svc.sparsify()
    assert svc.get().status == types.DiskStatus.LOCKED, "the disk is locked while the host sparsifies it"
    after = wait_for(svc.get, lambda d: d.status == types.DiskStatus.OK, what="disk ok after sparsify")

    assert sim.checksum(VM, disk.name) == before, "sparsify changed what the guest sees"
    assert after.actual_size <= allocated - 7 * MIB, \
        f"8 MiB of zeros should have gone back to the storage: {allocated} -> {after.actual_size} bytes"
    started = [e for e in events(connection, {1325}) if disk.name in e.description]
    done = [e for e in events(connection, {1326}) if disk.name in e.description]
    assert started and done and int(started[0].id) < int(done[0].id), "events 1325 then 1326 name the disk"


def test_sparsify_keeps_the_checkpoints_of_the_disk(sim, connection, vm):
    disk = add_disk(connection, vm, "dact1_cbt", types.DiskFormat.COW, backup=types.DiskBackup.INCREMENTAL)
    fill(sim, connection, vm, disk)
    backups = connection.system_service().vms_service().vm_service(vm.id).backups_service()

    def backup(**kw) -> tuple[types.Backup, list]:
        b = backups.add(types.Backup(disks=[types.Disk(id=disk.id)], **kw))
        svc = backups.backup_service(b.id)
        b = wait_for(svc.get, lambda x: x.phase in (types.BackupPhase.READY, types.BackupPhase.FAILED),
                     what="backup ready")
        assert b.phase == types.BackupPhase.READY
        modes = [d.backup_mode for d in svc.disks_service().list()]
        svc.finalize()
        wait_for(svc.get, lambda x: x.phase in (types.BackupPhase.SUCCEEDED, types.BackupPhase.FAILED),
                 what="backup finalized")
        wait_disk_ok(connection, disk.id)
        return b, modes

    full, _ = backup()
    assert full.to_checkpoint_id
    run_action(connection, disk.id, "sparsify")
    checkpoints = connection.system_service().vms_service().vm_service(vm.id).checkpoints_service().list()
    assert full.to_checkpoint_id in [c.id for c in checkpoints]
    _, modes = backup(from_checkpoint_id=full.to_checkpoint_id)
    assert modes == [types.DiskBackupMode.INCREMENTAL], "the checkpoint's bitmap survived the sparsify"


def test_sparsify_of_a_disk_of_a_running_vm_is_refused(sim, connection, vm):
    disk = add_disk(connection, vm, "dact1_up", types.DiskFormat.COW)
    power(connection, vm, "start")
    try:
        with pytest.raises(sdk.Error) as refused:
            disk_service(connection, disk.id).sparsify()
        assert refused.value.code == 409
        assert "Cannot sparsify Virtual Disk" in str(refused.value) and "non-Down VMs" in str(refused.value)
        assert VM in str(refused.value)
        with pytest.raises(sdk.Error) as refused:
            disk_service(connection, disk.id).reduce()
        assert refused.value.code == 409 and "Cannot reduce Virtual Disk" in str(refused.value)
        assert disk_service(connection, disk.id).get().status == types.DiskStatus.OK
    finally:
        power(connection, vm, "stop")


def test_sparsify_of_a_disk_with_snapshots_is_refused(connection, vm):
    disk = add_disk(connection, vm, "dact1_snap", types.DiskFormat.COW)
    snaps = connection.system_service().vms_service().vm_service(vm.id).snapshots_service()
    snap = snaps.add(types.Snapshot(description="before sparsify",
                                    disk_attachments=[types.DiskAttachment(disk=types.Disk(id=disk.id))]))
    wait_for(snaps.snapshot_service(snap.id).get, lambda s: s.snapshot_status == types.SnapshotStatus.OK,
             what="snapshot ok")
    with pytest.raises(sdk.Error) as refused:
        disk_service(connection, disk.id).sparsify()
    assert refused.value.code == 409 and "snapshots" in str(refused.value)


def test_a_locked_disk_is_neither_sparsified_nor_reduced(connection, vm):
    disk = add_disk(connection, vm, "dact1_locked", types.DiskFormat.COW)
    transfers = connection.system_service().image_transfers_service()
    x = transfers.add(types.ImageTransfer(disk=types.Disk(id=disk.id),
                                          direction=types.ImageTransferDirection.DOWNLOAD))
    wait_for(lambda: transfers.image_transfer_service(x.id).get(),
             lambda o: o.phase == types.ImageTransferPhase.TRANSFERRING, what="transfer ready")
    try:
        for verb in ("sparsify", "reduce"):
            with pytest.raises(sdk.Error) as refused:
                getattr(disk_service(connection, disk.id), verb)()
            assert refused.value.code == 409 and "locked" in str(refused.value), verb
    finally:
        transfers.image_transfer_service(x.id).finalize()
    wait_disk_ok(connection, disk.id)


def test_reduce_keeps_a_cow_disk_and_does_not_grow_it(sim, connection, vm):
    disk = add_disk(connection, vm, "dact1_red", types.DiskFormat.COW)
    fill(sim, connection, vm, disk)
    before = sim.checksum(VM, disk.name)
    allocated = disk_service(connection, disk.id).get().actual_size

    after = run_action(connection, disk.id, "reduce")

    assert sim.checksum(VM, disk.name) == before, "reduce changed what the guest sees"
    assert 0 < after.actual_size <= allocated
    assert after.provisioned_size == 32 * MIB, "reduce never changes the disk's virtual size"
    assert [e for e in events(connection, {382}) if disk.name in e.description], "event 382 names the disk"


def test_reduce_of_a_raw_disk_is_refused(connection, vm):
    disk = add_disk(connection, vm, "dact1_raw", types.DiskFormat.RAW)
    with pytest.raises(sdk.Error) as refused:
        disk_service(connection, disk.id).reduce()
    assert refused.value.code == 400 and "Cannot reduce Virtual Disk" in str(refused.value)
    assert disk_service(connection, disk.id).get().status == types.DiskStatus.OK

