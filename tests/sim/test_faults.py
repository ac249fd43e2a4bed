"""Faults armed through `olvm-sim fault`, and state that survives a restart."""
from __future__ import annotations

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
from ovirt_imageio import client

from .conftest import (create_transfer, disk_status, start_sim, vm_by_name, vm_disks, wait_disk_ok, wait_for,
                       wait_phase)

FAILED_OR_ENDED = {types.ImageTransferPhase.FINISHED_FAILURE, types.ImageTransferPhase.FINISHED_CLEANUP,
                   types.ImageTransferPhase.CANCELLED, types.ImageTransferPhase.CANCELLED_SYSTEM,
                   types.ImageTransferPhase.CANCELLED_USER, types.ImageTransferPhase.PAUSED_SYSTEM}


def test_engine_500_fails_the_next_call_only(sim, connection, vms):
    assert vms.list()  # logged in: the fault hits an API request, not the token request
    sim.fault("engine-500")
    with pytest.raises(sdk.Error) as e:
        vms.list()
    assert e.value.code == 500, e.value
    assert not isinstance(e.value, sdk.AuthError)
    assert {"web1", "db1", "proxy1"} <= {v.name for v in vms.list()}


def test_engine_500_count(sim, connection, vms):
    sim.fault("engine-500", count=2)
    for _ in range(2):
        with pytest.raises(sdk.Error) as e:
            connection.system_service().get()
        assert e.value.code == 500
    assert connection.system_service().get().product_info.version.major == 4


def test_transfer_fail(sim, connection):
    disk = vm_disks(connection, vm_by_name(connection, "db1"))["db1_disk"]
    sim.fault("transfer-fail")
    transfers = connection.system_service().image_transfers_service()
    t = transfers.add(types.ImageTransfer(disk=types.Disk(id=disk.id), direction=types.ImageTransferDirection.DOWNLOAD,
                                          format=types.DiskFormat.RAW, inactivity_timeout=120,
                                          timeout_policy=types.ImageTransferTimeoutPolicy.CANCEL))
    seen = []
    end = wait_phase(transfers.image_transfer_service(t.id).get,
                     {types.ImageTransferPhase.FINISHED_FAILURE, types.ImageTransferPhase.FINISHED_SUCCESS},
                     timeout=60, what="failed transfer", seen=seen)
    assert end.phase == types.ImageTransferPhase.FINISHED_FAILURE, seen
    assert types.ImageTransferPhase.TRANSFERRING not in seen, seen
    wait_disk_ok(connection, disk.id, timeout=60)
    # Only the next transfer fails.
    t2 = create_transfer(connection, disk=types.Disk(id=disk.id), direction=types.ImageTransferDirection.DOWNLOAD)
    assert t2.phase == types.ImageTransferPhase.TRANSFERRING
    transfers.image_transfer_service(t2.id).cancel()
    wait_disk_ok(connection, disk.id, timeout=60)


def test_ticket_expire(sim, connection, tmp_path):
    disk = vm_disks(connection, vm_by_name(connection, "db1"))["db1_disk"]
    t = create_transfer(connection, disk=types.Disk(id=disk.id), direction=types.ImageTransferDirection.DOWNLOAD)
    assert t.phase == types.ImageTransferPhase.TRANSFERRING
    sim.fault("ticket-expire")
    with pytest.raises(Exception):  # noqa: B017 (imageio's client raises by the step that finds the ticket gone)
        client.download(t.transfer_url, str(tmp_path / "expired.qcow2"), sim.ca_file, proxy_url=t.proxy_url)
    svc = connection.system_service().image_transfers_service().image_transfer_service(t.id)
    try:
        svc.cancel()
    except sdk.Error:
        pass  # the engine may have noticed on its own
    try:
        wait_phase(svc.get, FAILED_OR_ENDED, timeout=60, what="transfer without a ticket to end")
    except sdk.NotFoundError:
        pass
    wait_disk_ok(connection, disk.id, timeout=60)


def test_backup_stall(sim, connection):
    web1 = vm_by_name(connection, "web1")
    disks = vm_disks(connection, web1)
    sim.fault("backup-stall")
    backups = connection.system_service().vms_service().vm_service(web1.id).backups_service()
    backup = backups.add(types.Backup(disks=[types.Disk(id=d.id) for d in disks.values()]))
    svc = backups.backup_service(backup.id)
    seen = []
    with pytest.raises(pytest.fail.Exception):
        wait_phase(svc.get, {types.BackupPhase.READY}, timeout=5, what="(stalled) backup ready", seen=seen)
    assert types.BackupPhase.READY not in seen and seen[-1] == types.BackupPhase.STARTING, seen
    # A premature stop fails the backup and releases the disks.
    try:
        svc.finalize()
    except sdk.Error:
        pass  # the engine answers a fault for a premature stop
    end = wait_phase(svc.get, {types.BackupPhase.FAILED, types.BackupPhase.SUCCEEDED}, timeout=60,
                     what="stalled backup to end")
    assert end.phase == types.BackupPhase.FAILED
    for d in disks.values():
        wait_disk_ok(connection, d.id, timeout=60)
    # The next backup works again.
    b2 = backups.add(types.Backup(disks=[types.Disk(id=d.id) for d in disks.values()]))
    s2 = backups.backup_service(b2.id)
    wait_phase(s2.get, {types.BackupPhase.READY}, timeout=60, what="backup ready")
    s2.finalize()
    wait_phase(s2.get, {types.BackupPhase.SUCCEEDED}, timeout=60, what="backup succeeded")
    for d in disks.values():
        wait_disk_ok(connection, d.id, timeout=60)


def test_freeze_fail_fails_only_a_backup_that_requires_consistency(sim, connection):
    web1 = vm_by_name(connection, "web1")
    disks = vm_disks(connection, web1)
    vm_service = connection.system_service().vms_service().vm_service(web1.id)
    backups = vm_service.backups_service()

    def backup_ends(require_consistency: bool) -> types.BackupPhase:
        sim.fault("freeze-fail")
        backup = backups.add(types.Backup(disks=[types.Disk(id=d.id) for d in disks.values()]),
                             require_consistency=require_consistency)
        svc = backups.backup_service(backup.id)
        phase = wait_phase(svc.get, {types.BackupPhase.READY, types.BackupPhase.FAILED}, timeout=60,
                           what="backup ready or failed").phase
        if phase == types.BackupPhase.READY:
            svc.finalize()
            wait_phase(svc.get, {types.BackupPhase.SUCCEEDED}, timeout=60, what="backup succeeded")
        for d in disks.values():
            wait_disk_ok(connection, d.id, timeout=60)
        return phase

    # Without require_consistency the engine warns and goes on; with it, the backup fails and releases the disks.
    assert backup_ends(require_consistency=False) == types.BackupPhase.READY
    assert backup_ends(require_consistency=True) == types.BackupPhase.FAILED
    events = connection.system_service().events_service().list(search=f"vm.name={web1.name}", max=50)
    codes = [e.code for e in events]
    assert codes.count(10901) >= 2 and 10900 in codes, "each freeze is an event, and so is each failed one"


@pytest.mark.processes  # starts a simulator of its own, to restart it
def test_state_survives_restart(tmp_path_factory):
    data = tmp_path_factory.mktemp("restart")
    sim = start_sim(data)
    try:
        conn = sim.connect()
        try:
            system = conn.system_service()
            web1 = vm_by_name(conn, "web1")
            system.tags_service().add(types.Tag(name="persisted", description="survives restarts"))
            system.vms_service().vm_service(web1.id).tags_service().add(types.Tag(name="persisted"))
            snaps = system.vms_service().vm_service(web1.id).snapshots_service()
            snap = snaps.add(types.Snapshot(description="before restart", persist_memorystate=False))
            wait_for(snaps.snapshot_service(snap.id).get, lambda s: s.snapshot_status == types.SnapshotStatus.OK,
                     timeout=60, what="snapshot ok")
            ovf = system.vms_service().vm_service(web1.id).get(all_content=True).initialization.configuration.data
            copy = system.vms_service().add(types.Vm(
                name="restored", cluster=types.Cluster(name="Other"),
                initialization=types.Initialization(
                    configuration=types.Configuration(type=types.ConfigurationType.OVF, data=ovf),
                    regenerate_ids=True)))
            sim.write("web1", "web1_os", 1024 * 1024, 256 * 1024, 99)
            checksum = sim.checksum("web1", "web1_os")
            vm_ids = {v.name: v.id for v in system.vms_service().list()}
        finally:
            conn.close()
    finally:
        sim.stop()

    again = start_sim(data)
    try:
        conn = again.connect()
        try:
            system = conn.system_service()
            assert {v.name: v.id for v in system.vms_service().list()} == vm_ids
            assert "persisted" in {t.name for t in system.tags_service().list()}
            assert [v.name for v in system.vms_service().list(search="tag=persisted")] == ["web1"]
            vm_tags = {t.name for t in system.vms_service().vm_service(vm_ids["web1"]).tags_service().list()}
            assert vm_tags == {"gold", "persisted"}
            snaps = system.vms_service().vm_service(vm_ids["web1"]).snapshots_service().list()
            mine = [s for s in snaps if s.id == snap.id]
            assert mine and mine[0].description == "before restart"
            assert mine[0].snapshot_status == types.SnapshotStatus.OK
            restored = system.vms_service().vm_service(copy.id).get()
            assert restored.name == "restored"
            clusters = {c.id: c.name for c in system.clusters_service().list()}
            assert clusters[restored.cluster.id] == "Other"
            assert again.checksum("web1", "web1_os") == checksum
            for d in vm_disks(conn, vm_by_name(conn, "web1")).values():
                assert d.status == types.DiskStatus.OK
            # The data plane works after the restart too.
            disk = vm_disks(conn, vm_by_name(conn, "db1"))["db1_disk"]
            t = create_transfer(conn, disk=types.Disk(id=disk.id), direction=types.ImageTransferDirection.DOWNLOAD)
            assert t.phase == types.ImageTransferPhase.TRANSFERRING
            system.image_transfers_service().image_transfer_service(t.id).cancel()
            wait_disk_ok(conn, disk.id)
            assert disk_status(conn, disk.id) == types.DiskStatus.OK
        finally:
            conn.close()
    finally:
        again.stop()
