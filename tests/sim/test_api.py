"""The engine REST API as ovirtsdk4 sees it: login, search, entities, tags, events, snapshots."""
from __future__ import annotations

import time

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from .conftest import vm_by_name, wait_for, wait_gone

UNKNOWN_ID = "00000000-0000-0000-0000-0000000000aa"


def names(objs) -> list[str]:
    return sorted(o.name for o in objs)


def test_login_with_ca_file(connection):
    api = connection.system_service().get()
    assert api.product_info is not None
    assert api.product_info.version.major == 4
    assert api.product_info.version.full_version
    assert connection.test(raise_exception=True)


def test_bad_password_is_an_auth_error(sim):
    c = sim.connection
    bad = sdk.Connection(url=c["url"], username=c["username"], password=c["password"] + "-wrong", ca_file=c["ca_file"])
    try:
        with pytest.raises(sdk.AuthError):
            bad.system_service().vms_service().list()
    finally:
        bad.close()


def test_missing_ca_file_is_refused(sim, tmp_path):
    c = sim.connection
    with pytest.raises(sdk.Error, match="CA file"):
        sdk.Connection(url=c["url"], username=c["username"], password=c["password"], ca_file=str(tmp_path / "nope.pem"))


def test_list_vms(vms):
    assert {"web1", "db1", "proxy1"} <= set(names(vms.list()))
    for vm in vms.list():
        assert vm.id and vm.status in (types.VmStatus.UP, types.VmStatus.DOWN), (vm.name, vm.status)


def test_vm_status_from_inventory(vms):
    by_name = {v.name: v for v in vms.list()}
    assert by_name["web1"].status == types.VmStatus.UP
    assert by_name["db1"].status == types.VmStatus.DOWN
    assert by_name["proxy1"].status == types.VmStatus.UP


def test_search_by_name(vms):
    assert names(vms.list(search="name=web1")) == ["web1"]
    assert names(vms.list(search="name=WEB1")) == ["web1"]  # engine default: case-insensitive
    assert names(vms.list(search="name=WEB1", case_sensitive=False)) == ["web1"]
    assert names(vms.list(search="name=nosuchvm")) == []


def test_search_by_name_wildcard(vms):
    assert names(vms.list(search="name=web*")) == ["web1"]


def test_search_by_tag(vms):
    assert names(vms.list(search="tag=gold")) == ["web1"]


def test_paging(vms):
    """page_vms.py: max=1 with `page N` until an empty page; every VM shows up exactly once."""
    seen = []
    for page in range(1, 20):
        got = vms.list(max=1, search=f"page {page}")
        assert len(got) <= 1
        if not got:
            break
        seen.append(got[0].name)
    else:
        pytest.fail("paging never returned an empty page")
    assert sorted(seen) == names(vms.list())


def test_unknown_vm_is_404(vms):
    with pytest.raises(sdk.NotFoundError) as e:
        vms.vm_service(UNKNOWN_ID).get()
    assert e.value.code == 404


def test_vm_details(connection):
    web1 = vm_by_name(connection, "web1")
    vm = connection.system_service().vms_service().vm_service(web1.id).get()
    assert vm.name == "web1"
    assert vm.memory == 2 * 1024 ** 3
    assert (vm.cpu.topology.sockets, vm.cpu.topology.cores, vm.cpu.topology.threads) == (1, 2, 1)
    clusters = {c.id: c.name for c in connection.system_service().clusters_service().list()}
    assert clusters[vm.cluster.id] == "Default"
    atts = connection.system_service().vms_service().vm_service(vm.id).disk_attachments_service().list()
    assert len(atts) == 2
    for a in atts:
        assert a.disk is not None and a.disk.id


def test_vm_ovf_with_all_content(vms):
    web1 = vms.list(search="name=web1")[0]
    plain = vms.vm_service(web1.id).get()
    assert plain.initialization is None or plain.initialization.configuration is None \
        or not plain.initialization.configuration.data
    full = vms.vm_service(web1.id).get(all_content=True)
    conf = full.initialization.configuration
    assert conf.type == types.ConfigurationType.OVF
    assert "Envelope" in conf.data and "web1" in conf.data
    listed = vms.list(search="name=web1", all_content=True)
    assert "web1" in listed[0].initialization.configuration.data


def test_import_from_ovf_keeps_the_vm_id_unless_asked_to_regenerate(vms):
    web1 = vms.list(search="name=web1")[0]

    def add(ovf: str, name: str | None, regenerate: bool) -> types.Vm:
        return vms.add(types.Vm(name=name, cluster=web1.cluster, initialization=types.Initialization(
            configuration=types.Configuration(type=types.ConfigurationType.OVF, data=ovf), regenerate_ids=regenerate)))

    copy = add(vms.vm_service(web1.id).get(all_content=True).initialization.configuration.data, "web1-copy", True)
    assert copy.id != web1.id
    ovf = vms.vm_service(copy.id).get(all_content=True).initialization.configuration.data
    with pytest.raises(sdk.Error, match="same identifier"):
        add(ovf, "web1-copy2", False)
    vms.vm_service(copy.id).remove()
    wait_gone(lambda: vms.vm_service(copy.id).get())
    again = add(ovf, None, False)
    assert (again.id, again.name) == (copy.id, "web1-copy")
    vms.vm_service(again.id).remove()


def test_inventory_entities(connection):
    system = connection.system_service()
    assert {"Default", "Other"} <= set(names(system.clusters_service().list()))
    sds = system.storage_domains_service().list()
    assert {"data1", "data2"} <= set(names(sds))
    assert names(system.storage_domains_service().list(search="name=data2")) == ["data2"]
    sd = next(s for s in sds if s.name == "data1")
    assert system.storage_domains_service().storage_domain_service(sd.id).get().name == "data1"
    hosts = system.hosts_service().list()
    assert len(hosts) >= 1
    assert system.hosts_service().host_service(hosts[0].id).get().name == hosts[0].name
    assert "Default" in names(system.data_centers_service().list())


def test_disks_of_vms(connection):
    disks = {d.name: d for d in connection.system_service().disks_service().list()}
    assert {"web1_os", "web1_data", "db1_disk"} <= set(disks)
    assert disks["web1_os"].format == types.DiskFormat.COW
    assert disks["web1_os"].provisioned_size == 64 * 1024 * 1024
    assert disks["web1_data"].provisioned_size == 16 * 1024 * 1024
    assert disks["db1_disk"].format == types.DiskFormat.RAW
    assert disks["db1_disk"].provisioned_size == 32 * 1024 * 1024
    for d in disks.values():
        assert d.status == types.DiskStatus.OK
        assert d.storage_domains and d.storage_domains[0].id


def test_tags(connection):
    system = connection.system_service()
    tags = system.tags_service()
    assert {"gold", "silver"} <= set(names(tags.list()))
    bronze = tags.add(types.Tag(name="bronze", description="Bronze policy"))
    assert bronze.id and bronze.name == "bronze"
    assert "bronze" in names(tags.list())

    db1 = vm_by_name(connection, "db1")
    vm_tags = system.vms_service().vm_service(db1.id).tags_service()
    assert names(vm_tags.list()) == []
    vm_tags.add(types.Tag(name="bronze"))
    assert names(vm_tags.list()) == ["bronze"]
    assert names(system.vms_service().list(search="tag=bronze")) == ["db1"]

    # The assignment shows up in the event feed, naming the tag and the VM.
    def assignment_events():
        return [e for e in system.events_service().list(max=200)
                if e.description and "bronze" in e.description and "db1" in e.description]
    wait_for(assignment_events, timeout=10, what="an event about assigning tag bronze to db1")

    tag_id = vm_tags.list()[0].id
    vm_tags.tag_service(tag_id).remove()
    assert names(vm_tags.list()) == []
    assert names(system.vms_service().list(search="tag=bronze")) == []

    tags.tag_service(bronze.id).remove()
    assert "bronze" not in names(tags.list())


def test_events_newest_first(connection):
    events = connection.system_service().events_service()
    listed = events.list(max=50)
    assert listed, "no events at all"
    ids = [int(e.id) for e in listed]
    assert ids == sorted(ids, reverse=True)
    newest = events.list(max=1)
    assert len(newest) == 1 and int(newest[0].id) == ids[0]
    for e in listed:
        assert e.time is not None and e.time.tzinfo is not None
    if len(ids) > 1:
        later = events.list(from_=ids[-1])
        assert all(int(e.id) > ids[-1] for e in later)


def test_snapshot_lifecycle(connection):
    system = connection.system_service()
    web1 = vm_by_name(connection, "web1")
    snaps = system.vms_service().vm_service(web1.id).snapshots_service()
    before = snaps.list()
    active = [s for s in before if s.snapshot_type == types.SnapshotType.ACTIVE]
    assert len(active) == 1, [(s.description, s.snapshot_type) for s in before]

    started = time.time()
    snap = snaps.add(types.Snapshot(description="acceptance snap", persist_memorystate=False))
    assert snap.id
    statuses = [snap.snapshot_status]
    svc = snaps.snapshot_service(snap.id)

    def probe():
        s = svc.get()
        if statuses[-1] != s.snapshot_status:
            statuses.append(s.snapshot_status)
        return s
    done = wait_for(probe, lambda s: s.snapshot_status == types.SnapshotStatus.OK, timeout=60,
                    what="snapshot ok")
    assert statuses[0] in (types.SnapshotStatus.LOCKED, types.SnapshotStatus.OK), statuses
    assert statuses[-1] == types.SnapshotStatus.OK, statuses
    assert None not in statuses, f"unknown snapshot status value (wrong case?): {statuses}"
    assert done.description == "acceptance snap"

    listed = snaps.list()
    assert snap.id in [s.id for s in listed]
    assert any(s.snapshot_type == types.SnapshotType.ACTIVE for s in listed)
    mine = next(s for s in listed if s.id == snap.id)
    assert mine.snapshot_type == types.SnapshotType.REGULAR

    sds = {s.id for s in system.storage_domains_service().list()}
    snap_disks = snaps.snapshot_service(snap.id).disks_service().list()
    assert sorted(d.alias or d.name for d in snap_disks) == ["web1_data", "web1_os"]
    for d in snap_disks:
        assert d.storage_domains[0].id in sds

    # A VM with a guest agent gets its file systems frozen and thawed for the snapshot.
    def freeze_thaw():
        descs = [(e.description or "").lower() for e in system.events_service().list(max=200)
                 if e.time is None or e.time.timestamp() >= started - 5]
        return any("freez" in d for d in descs) and any("thaw" in d for d in descs)
    wait_for(freeze_thaw, timeout=10, what="freeze and thaw events")

    svc.remove()
    wait_gone(svc.get, timeout=60, what="the removed snapshot to go away")
    assert snap.id not in [s.id for s in snaps.list()]
