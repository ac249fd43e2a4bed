"""References and links as the engine renders them (issue 17, item 6): every nested reference carries the href of
its entity and every entity lists the sub-collections it has as <link rel=...>, so `connection.follow_link` reaches
the right object from a VM, a disk, an attachment, a snapshot, a host, a cluster and an image transfer."""
from __future__ import annotations

import ovirtsdk4.types as types
import pytest

from .conftest import create_transfer, vm_by_name, wait_phase

API = "/ovirt-engine/api"
BLANK = "00000000-0000-0000-0000-000000000000"
SUPER_USER = "00000000-0000-0000-0000-000000000001"


@pytest.fixture(scope="module")
def web1(connection):
    return vm_by_name(connection, "web1")


def test_a_vms_references_lead_to_its_cluster_host_and_template(connection, web1):
    vm = connection.system_service().vms_service().vm_service(web1.id).get()
    assert vm.cluster.href == f"{API}/clusters/{vm.cluster.id}"
    cluster = connection.follow_link(vm.cluster)
    assert (cluster.id, cluster.name) == (vm.cluster.id, "Default")
    host = connection.follow_link(vm.host)
    assert (host.id, host.name) == (vm.host.id, "host1")
    assert vm.template.id == BLANK and vm.template.href == f"{API}/templates/{BLANK}"
    template = connection.follow_link(vm.template)
    assert (template.id, template.name) == (BLANK, "Blank")
    assert connection.follow_link(vm.original_template).id == BLANK


def test_a_vms_links_list_its_sub_collections(connection, web1):
    service = connection.system_service().vms_service().vm_service(web1.id)
    vm = service.get()
    atts = connection.follow_link(vm.disk_attachments)
    assert sorted(a.id for a in atts) == sorted(a.id for a in service.disk_attachments_service().list())
    assert len(atts) == 2 and all(a.vm.id == vm.id for a in atts)
    snaps = connection.follow_link(vm.snapshots)
    assert [s.snapshot_type for s in snaps][:1] == [types.SnapshotType.ACTIVE]
    assert [n.name for n in connection.follow_link(vm.nics)] == ["nic1"]
    assert [g.name for g in connection.follow_link(vm.tags)] == ["gold"]
    perms = connection.follow_link(vm.permissions)
    assert len(perms) == 1
    assert (perms[0].role.id, perms[0].vm.id) == (SUPER_USER, vm.id) and perms[0].user.id


def test_attachments_and_snapshots_lead_back_to_their_vm_and_disk(connection, web1):
    service = connection.system_service().vms_service().vm_service(web1.id)
    att = service.disk_attachments_service().list()[0]
    assert connection.follow_link(att.vm).id == web1.id
    disk = connection.follow_link(att.disk)
    assert disk.id == att.disk.id and disk.name in ("web1_os", "web1_data")
    snap = service.snapshots_service().list()[0]
    assert connection.follow_link(snap.vm).id == web1.id


def test_a_disks_storage_domain_permissions_and_volumes_are_followed(connection):
    disk = connection.system_service().disks_service().list(search="name=web1_data")[0]
    assert disk.storage_domains[0].href == f"{API}/storagedomains/{disk.storage_domains[0].id}"
    sd = connection.follow_link(disk.storage_domains[0])
    assert (sd.id, sd.name) == (disk.storage_domains[0].id, "data2")
    perms = connection.follow_link(disk.permissions)
    assert [(p.role.id, p.disk.id) for p in perms] == [(SUPER_USER, disk.id)]
    # The link lists the snapshots' volumes (the engine's include_active defaults to false); with the active one:
    assert all(v.disk.id == disk.id for v in connection.follow_link(disk.disk_snapshots))
    vols = connection.system_service().disks_service().disk_service(disk.id).disk_snapshots_service().list(
        include_active=True)
    assert vols and all(v.disk.id == disk.id for v in vols) and vols[-1].id == disk.image_id
    on_domain = connection.follow_link(sd.disks)
    assert disk.id in {d.id for d in on_domain}


def test_hosts_clusters_and_domains_lead_to_their_parents(connection):
    system = connection.system_service()
    host = system.hosts_service().list()[0]
    cluster = connection.follow_link(host.cluster)
    assert (cluster.id, cluster.name) == (host.cluster.id, "Default")
    dc = connection.follow_link(cluster.data_center)
    assert (dc.id, dc.name) == (cluster.data_center.id, "Default")
    sd = system.storage_domains_service().list(search="name=data1")[0]
    assert connection.follow_link(sd.data_centers[0]).id == dc.id
    assert [p.cluster.id for p in connection.follow_link(cluster.permissions)] == [cluster.id]


def test_a_transfer_leads_to_its_disk_and_host(connection):
    db1 = vm_by_name(connection, "db1")
    att = connection.system_service().vms_service().vm_service(db1.id).disk_attachments_service().list()[0]
    transfer = create_transfer(connection, disk=types.Disk(id=att.disk.id),
                               direction=types.ImageTransferDirection.DOWNLOAD)
    svc = connection.system_service().image_transfers_service().image_transfer_service(transfer.id)
    try:
        assert transfer.disk.href == f"{API}/disks/{att.disk.id}"
        assert connection.follow_link(transfer.disk).id == att.disk.id
        assert connection.follow_link(transfer.host).name == "host1"
        assert transfer.image.href == f"{API}/images/{att.disk.id}"
    finally:
        svc.cancel()
        wait_phase(svc.get, {types.ImageTransferPhase.FINISHED_CLEANUP, types.ImageTransferPhase.FINISHED_FAILURE,
                             types.ImageTransferPhase.CANCELLED})
