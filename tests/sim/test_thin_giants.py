"""A backup of a huge thin disk costs what the disk holds, not its virtual size: a running VM's host ends a backup
without a pass over the whole image, and so does the simulator (sim/CONTRACT.md, "Cost follows the data").

The simulator used to empty the backup's overlay at the end (`qemu-img commit` without -d), writing an L2 table over
the whole virtual size: half a minute for 8 TiB, minutes for 16 TiB, longer than a finalize is waited for here."""
from __future__ import annotations

import ovirtsdk4.types as types
import pytest
import yaml
from ovirt_imageio import client

from .conftest import MIB, create_transfer, finalize_transfer, start_sim, vm_by_name, vm_disks, wait_disk_ok
from .test_backup import backups_service, finalize_backup, wait_ready

TIB = 1 << 40
SIZE = 16 * TIB
# A few MiB spread over the disk: at its start, its middle and its end.
CONTENT = [{"offset": 0, "length": MIB, "pattern": "random", "seed": 1},
           {"offset": 8 * TIB, "length": MIB, "pattern": "random", "seed": 2},
           {"offset": SIZE - MIB, "length": MIB, "pattern": "random", "seed": 3}]
WRITE = (3 * TIB, MIB)  # what the guest writes while the full backup runs


@pytest.fixture(scope="module")
def giant(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("giant")
    inventory = tmp / "inventory.yaml"
    inventory.write_text(yaml.safe_dump({
        "data_centers": [{"name": "Default"}], "clusters": [{"name": "Default", "data_center": "Default"}],
        "hosts": [{"name": "host1", "cluster": "Default"}],
        "storage_domains": [{"name": "data1", "data_center": "Default"}],
        "vms": [{"name": "giant", "cluster": "Default", "memory": "1GiB", "status": "up",
                 "disks": [{"name": "giant_os", "size": SIZE, "format": "cow", "interface": "virtio_scsi",
                            "bootable": True, "storage_domain": "data1", "content": CONTENT}]}]}))
    sim = start_sim(tmp / "sim", inventory)
    conn = sim.connect()
    try:
        yield sim, conn
    finally:
        conn.close()
        sim.stop()


@pytest.mark.processes  # starts a simulator of its own
def test_backup_of_a_huge_thin_disk_ends_without_a_pass_over_it(giant):
    sim, connection = giant
    vm = vm_by_name(connection, "giant")
    [disk] = vm_disks(connection, vm).values()
    assert disk.provisioned_size == SIZE

    backups = backups_service(connection, vm)
    svc = backups.backup_service(backups.add(types.Backup(disks=[types.Disk(id=disk.id)])).id)
    cp1 = wait_ready(svc).to_checkpoint_id
    t = create_transfer(connection, disk=types.Disk(id=disk.id), backup=types.Backup(id=svc.get().id),
                        direction=types.ImageTransferDirection.DOWNLOAD)
    with client.ImageioClient(t.transfer_url, cafile=sim.ca_file) as c:
        data = [(e.start, e.length) for e in c.extents("zero") if not e.zero]
    assert sum(n for _, n in data) == 3 * MIB, data
    # The guest goes on writing meanwhile (into the overlay the end of the backup merges down).
    sim.write("giant", "giant_os", *WRITE, seed=4)
    finalize_transfer(connection, t)
    finalize_backup(svc, timeout=60)  # a pass over 16 TiB took minutes
    wait_disk_ok(connection, disk.id, timeout=30)

    # What the guest wrote during the backup stays recorded for the next incremental, and only that.
    svc = backups.backup_service(backups.add(types.Backup(from_checkpoint_id=cp1,
                                                          disks=[types.Disk(id=disk.id)])).id)
    wait_ready(svc)
    t = create_transfer(connection, disk=types.Disk(id=disk.id), backup=types.Backup(id=svc.get().id),
                        direction=types.ImageTransferDirection.DOWNLOAD)
    with client.ImageioClient(t.transfer_url, cafile=sim.ca_file) as c:
        dirty = [(e.start, e.length) for e in c.extents("dirty") if e.dirty]
    assert dirty == [WRITE], dirty
    finalize_transfer(connection, t)
    finalize_backup(svc, timeout=60)
