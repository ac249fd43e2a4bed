"""Disks added, changed and listed as a client written against the engine's API does it (issue 17, items 1, 2, 4): a
disk added through a VM's disk attachments with a full definition, PUT on an attachment (unplug, plug, extend), on a
disk and on a VM, and a storage domain's disks. Only ovirtsdk4 talks to the simulator; images are checked with
qemu-img in its data directory."""
from __future__ import annotations

import json

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from .conftest import MIB, qemu_img, vm_by_name, wait_disk_ok, wait_for, wait_gone


def _image(sim, disk_id: str) -> dict:
    """qemu-img info of the disk's active volume (the newest file of its directory under DIR/images)."""
    vols = sorted((sim.data / "images" / disk_id).glob("vol-*"), key=lambda p: p.stat().st_mtime_ns)
    assert vols, f"no image for disk {disk_id}"
    return json.loads(qemu_img("info", "-U", "--output", "json", str(vols[-1])).stdout)


@pytest.fixture(scope="module")
def down_vm(connection):
    vms = connection.system_service().vms_service()
    vm = vms.add(types.Vm(name="upd1", cluster=types.Cluster(name="Default"), memory=512 * MIB))
    yield vm
    vms.vm_service(vm.id).remove()


def _add_vm_disk(connection, vm, name: str, fmt=types.DiskFormat.COW, size: int = 8 * MIB) -> types.DiskAttachment:
    atts = connection.system_service().vms_service().vm_service(vm.id).disk_attachments_service()
    return atts.add(types.DiskAttachment(
        disk=types.Disk(name=name, provisioned_size=size, format=fmt, sparse=True,
                        storage_domains=[types.StorageDomain(name="data1")]),
        interface=types.DiskInterface.VIRTIO_SCSI, bootable=False, active=True))


@pytest.mark.parametrize("fmt", [types.DiskFormat.COW, types.DiskFormat.RAW])
def test_a_disk_definition_posted_to_a_vm_is_created_and_attached(sim, connection, down_vm, fmt):
    name = f"upd1_new_{fmt.value}"
    att = _add_vm_disk(connection, down_vm, name, fmt, 24 * MIB)
    assert att.disk is not None and att.disk.id
    disk = wait_disk_ok(connection, att.disk.id)
    assert (disk.name, disk.provisioned_size, disk.format) == (name, 24 * MIB, fmt)
    info = _image(sim, disk.id)
    assert info["virtual-size"] == 24 * MIB
    assert info["format"] == {"cow": "qcow2", "raw": "raw"}[fmt.value]

    atts = connection.system_service().vms_service().vm_service(down_vm.id).disk_attachments_service().list()
    mine = [a for a in atts if a.disk.id == disk.id]
    assert len(mine) == 1 and mine[0].active and mine[0].interface == types.DiskInterface.VIRTIO_SCSI


def test_a_disk_definition_without_a_storage_domain_is_refused(connection, down_vm):
    atts = connection.system_service().vms_service().vm_service(down_vm.id).disk_attachments_service()
    with pytest.raises(sdk.Error) as refused:
        atts.add(types.DiskAttachment(disk=types.Disk(name="nosd", provisioned_size=MIB, format=types.DiskFormat.COW),
                                      interface=types.DiskInterface.VIRTIO, active=True))
    assert refused.value.code == 400
    assert connection.system_service().disks_service().list(search="name=nosd") == []


def test_an_attachment_is_deactivated_and_activated(connection, down_vm):
    att = _add_vm_disk(connection, down_vm, "upd1_plug")
    wait_disk_ok(connection, att.disk.id)
    service = connection.system_service().vms_service().vm_service(down_vm.id) \
        .disk_attachments_service().attachment_service(att.id)
    service.update(types.DiskAttachment(active=False))
    assert service.get().active is False
    service.update(types.DiskAttachment(active=True))
    assert service.get().active is True


def test_an_attachment_extends_its_disk_and_a_shrink_is_refused(sim, connection, down_vm):
    att = _add_vm_disk(connection, down_vm, "upd1_grow")
    wait_disk_ok(connection, att.disk.id)
    service = connection.system_service().vms_service().vm_service(down_vm.id) \
        .disk_attachments_service().attachment_service(att.id)
    service.update(types.DiskAttachment(disk=types.Disk(provisioned_size=16 * MIB)))
    disk = wait_for(lambda: connection.system_service().disks_service().disk_service(att.disk.id).get(),
                    lambda d: d.status == types.DiskStatus.OK and d.provisioned_size == 16 * MIB,
                    what="the disk extended")
    assert _image(sim, disk.id)["virtual-size"] == 16 * MIB

    with pytest.raises(sdk.Error) as refused:
        service.update(types.DiskAttachment(disk=types.Disk(provisioned_size=4 * MIB)))
    assert refused.value.code == 400 and "too small" in str(refused.value)
    assert _image(sim, disk.id)["virtual-size"] == 16 * MIB


def test_a_locked_disk_is_not_updated(connection, down_vm):
    att = _add_vm_disk(connection, down_vm, "upd1_locked", size=64 * MIB)
    disks = connection.system_service().disks_service()
    if disks.disk_service(att.disk.id).get().status == types.DiskStatus.LOCKED:  # still being created
        with pytest.raises(sdk.Error) as refused:
            disks.disk_service(att.disk.id).update(types.Disk(alias="upd1_renamed"))
        assert refused.value.code == 409
    wait_disk_ok(connection, att.disk.id)
    # A running transfer locks the disk: an extend is refused while it runs.
    transfers = connection.system_service().image_transfers_service()
    x = transfers.add(types.ImageTransfer(disk=types.Disk(id=att.disk.id),
                                          direction=types.ImageTransferDirection.DOWNLOAD))
    wait_for(lambda: transfers.image_transfer_service(x.id).get(),
             lambda o: o.phase == types.ImageTransferPhase.TRANSFERRING, what="transfer ready")
    with pytest.raises(sdk.Error) as refused:
        disks.disk_service(att.disk.id).update(types.Disk(provisioned_size=128 * MIB))
    assert refused.value.code == 409 and "locked" in str(refused.value)
    transfers.image_transfer_service(x.id).finalize()
    disk = wait_disk_ok(connection, att.disk.id)
    assert disk.provisioned_size == 64 * MIB


def test_a_disk_is_renamed_described_and_extended(sim, connection):
    disks = connection.system_service().disks_service()
    added = disks.add(types.Disk(name="float1", format=types.DiskFormat.RAW, provisioned_size=8 * MIB,
                                 storage_domains=[types.StorageDomain(name="data2")]))
    wait_disk_ok(connection, added.id)
    disks.disk_service(added.id).update(types.Disk(alias="float1b", description="renamed",
                                                   provisioned_size=12 * MIB))
    disk = wait_for(lambda: disks.disk_service(added.id).get(),
                    lambda d: d.status == types.DiskStatus.OK and d.provisioned_size == 12 * MIB,
                    what="the disk extended")
    assert (disk.alias, disk.description) == ("float1b", "renamed")
    assert _image(sim, added.id)["virtual-size"] == 12 * MIB
    disks.disk_service(added.id).remove()
    wait_gone(disks.disk_service(added.id).get)


def test_a_vm_is_renamed_and_reconfigured(connection):
    vms = connection.system_service().vms_service()
    vm = vms.add(types.Vm(name="upd2", cluster=types.Cluster(name="Default")))
    service = vms.vm_service(vm.id)
    service.update(types.Vm(name="upd2b", description="after", memory=768 * MIB))
    got = service.get()
    assert (got.name, got.description, got.memory) == ("upd2b", "after", 768 * MIB)
    assert vm_by_name(connection, "upd2b").id == vm.id
    with pytest.raises(sdk.Error) as refused:
        service.update(types.Vm(name="db1"))
    assert refused.value.code == 409
    assert service.get().name == "upd2b"
    service.remove()


def test_a_storage_domains_disks_are_listed_and_removed(connection):
    system = connection.system_service()
    sds = system.storage_domains_service()
    data2 = sds.list(search="name=data2")[0]
    sd_disks = sds.storage_domain_service(data2.id).disks_service()
    added = system.disks_service().add(types.Disk(name="sd2disk", format=types.DiskFormat.COW,
                                                  provisioned_size=4 * MIB,
                                                  storage_domains=[types.StorageDomain(name="data2")]))
    wait_disk_ok(connection, added.id)
    listed = {d.id: d for d in sd_disks.list()}
    assert added.id in listed and listed[added.id].name == "sd2disk"
    assert all(d.storage_domains[0].id == data2.id for d in listed.values())
    data1 = sds.list(search="name=data1")[0]
    assert added.id not in [d.id for d in sds.storage_domain_service(data1.id).disks_service().list()]
    with pytest.raises(sdk.NotFoundError):  # not a disk of data1
        sds.storage_domain_service(data1.id).disks_service().disk_service(added.id).remove()

    sd_disks.disk_service(added.id).remove()
    wait_gone(system.disks_service().disk_service(added.id).get)
    assert added.id not in [d.id for d in sd_disks.list()]
