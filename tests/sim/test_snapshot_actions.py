"""What else an engine does with snapshots (issue 21): restore (revert) a VM to one, make a VM from one, refuse work
on a VM whose snapshot is locked, and the snapshot faults (a freeze that fails, a removal that fails, a lock that
lasts).

The tests build on each other (one simulator for the module) and run in file order."""
from __future__ import annotations

import time

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from .conftest import MIB, vm_by_name, vm_disks, wait_for, wait_gone

DISKS = ("web1_os", "web1_data")


@pytest.fixture(scope="module")
def state():
    return {}


def snapshots_service(connection, vm_id):
    return connection.system_service().vms_service().vm_service(vm_id).snapshots_service()


def add_snapshot(connection, vm_id, description) -> types.Snapshot:
    return snapshots_service(connection, vm_id).add(types.Snapshot(description=description,
                                                                   persist_memorystate=False))


def wait_snapshot_ok(connection, vm_id, snapshot_id) -> types.Snapshot:
    return wait_for(snapshots_service(connection, vm_id).snapshot_service(snapshot_id).get,
                    lambda s: s.snapshot_status == types.SnapshotStatus.OK, timeout=60, what="snapshot ok")


def refused(call) -> sdk.Error:
    with pytest.raises(sdk.Error) as e:
        call()
    return e.value


def events_since(connection, after: int, vm_id: str) -> list[types.Event]:
    return [e for e in connection.system_service().events_service().list(from_=after)
            if e.vm is not None and e.vm.id == vm_id]


def last_event(connection) -> int:
    return int(connection.system_service().events_service().list(max=1)[0].id)


def test_setup_two_snapshots(sim, connection, state):
    web1 = vm_by_name(connection, "web1")
    s1 = add_snapshot(connection, web1.id, "before")
    wait_snapshot_ok(connection, web1.id, s1.id)
    at_s1 = {d: sim.checksum("web1", d) for d in DISKS}
    sim.write("web1", "web1_os", 2 * MIB, MIB, seed=11)
    sim.write("web1", "web1_data", 3 * MIB, MIB, seed=12)
    s2 = add_snapshot(connection, web1.id, "after")
    wait_snapshot_ok(connection, web1.id, s2.id)
    sim.write("web1", "web1_os", 8 * MIB, MIB, seed=13)
    assert sim.checksum("web1", "web1_os") != at_s1["web1_os"]
    state.update(vm=web1.id, s1=s1.id, s2=s2.id, at_s1=at_s1, memory=web1.memory)


def test_restore_is_refused_while_the_vm_runs(connection, state):
    e = refused(snapshots_service(connection, state["vm"]).snapshot_service(state["s1"]).restore)
    assert e.code == 409 and "At least one of the VMs is not down" in str(e), e


def test_vm_from_snapshot_gets_its_disks_and_configuration(sim, connection, state):
    vms = connection.system_service().vms_service()
    clone = vms.add(types.Vm(name="web1-from-snap", cluster=types.Cluster(name="Default"),
                             snapshots=[types.Snapshot(id=state["s1"])]))
    svc = vms.vm_service(clone.id)
    seen = []
    done = wait_for(lambda: seen.append(svc.get().status) or seen[-1], lambda s: s == types.VmStatus.DOWN,
                    timeout=60, what="the VM made from a snapshot to be down")
    assert done == types.VmStatus.DOWN and types.VmStatus.IMAGE_LOCKED in seen, seen
    web1, got = vm_by_name(connection, "web1"), svc.get()
    assert (got.memory, got.os.type) == (web1.memory, web1.os.type)
    assert (got.cpu.topology.sockets, got.cpu.topology.cores) == (web1.cpu.topology.sockets, web1.cpu.topology.cores)
    nics, source_nics = svc.nics_service().list(), vms.vm_service(web1.id).nics_service().list()
    assert [n.name for n in nics] == [n.name for n in source_nics]
    assert {n.mac.address for n in nics}.isdisjoint({n.mac.address for n in source_nics})
    disks = vm_disks(connection, got)
    assert sorted(disks) == sorted(DISKS)
    assert not set(d.id for d in disks.values()) & set(d.id for d in vm_disks(connection, web1).values())
    assert all(d.status == types.DiskStatus.OK for d in disks.values())
    assert {d: sim.checksum("web1-from-snap", d) for d in DISKS} == state["at_s1"]


def test_restore_brings_the_disks_back_and_erases_later_snapshots(sim, connection, state):
    vms = connection.system_service().vms_service()
    svc = vms.vm_service(state["vm"])
    svc.update(types.Vm(memory=state["memory"] * 2))
    svc.stop()
    wait_for(svc.get, lambda v: v.status == types.VmStatus.DOWN, timeout=60, what="web1 down")
    before = {n: d.image_id for n, d in vm_disks(connection, svc.get()).items()}
    snaps = snapshots_service(connection, state["vm"])
    snaps.snapshot_service(state["s1"]).restore()
    assert svc.get().status == types.VmStatus.IMAGE_LOCKED
    e = refused(svc.start)
    assert e.code == 409 and "VM is locked" in str(e), e
    wait_for(svc.get, lambda v: v.status == types.VmStatus.DOWN, timeout=60, what="web1 restored")
    wait_for(snaps.list, lambda ss: all(s.snapshot_status == types.SnapshotStatus.OK for s in ss), timeout=60,
             what="snapshots settled")
    assert {d: sim.checksum("web1", d) for d in DISKS} == state["at_s1"]
    assert [s.id for s in snaps.list() if s.snapshot_type == types.SnapshotType.REGULAR] == [state["s1"]]
    assert svc.get().memory == state["memory"]  # the configuration the snapshot froze
    after = {n: d.image_id for n, d in vm_disks(connection, svc.get()).items()}
    assert all(after[n] != before[n] for n in DISKS)  # a new active volume over the snapshot's
    svc.start()
    wait_for(svc.get, lambda v: v.status == types.VmStatus.UP, timeout=60, what="web1 up")


def test_a_locked_snapshot_refuses_other_snapshot_work(sim, connection, state):
    snaps = snapshots_service(connection, state["vm"])
    sim.cli("fault", "snapshot-hold", "--seconds", "3")
    s3 = add_snapshot(connection, state["vm"], "slow")
    e = refused(snaps.snapshot_service(state["s1"]).remove)
    assert e.code == 409 and "Snapshot is currently being created for VM web1" in str(e), e
    e = refused(lambda: add_snapshot(connection, state["vm"], "another"))
    assert e.code == 409 and "Snapshot is currently being created for VM web1" in str(e), e
    time.sleep(1.5)  # past --state-delay: the lock lasts
    assert snaps.snapshot_service(s3.id).get().snapshot_status == types.SnapshotStatus.LOCKED
    wait_snapshot_ok(connection, state["vm"], s3.id)
    # While a removal merges, the snapshot's disks are locked.
    sim.cli("fault", "snapshot-hold", "--seconds", "2")
    snaps.snapshot_service(s3.id).remove()
    e = refused(lambda: add_snapshot(connection, state["vm"], "during merge"))
    assert e.code == 409 and "The following disks are locked" in str(e), e
    e = refused(snaps.snapshot_service(s3.id).remove)
    assert e.code == 409, e
    wait_gone(snaps.snapshot_service(s3.id).get, what="the removed snapshot")


def test_freeze_failure_takes_the_snapshot_unfrozen(sim, connection, state):
    start = last_event(connection)
    sim.fault("freeze-fail")
    s4 = add_snapshot(connection, state["vm"], "unfrozen")
    wait_snapshot_ok(connection, state["vm"], s4.id)
    codes = {e.code: e for e in events_since(connection, start, state["vm"])}
    assert 10901 in codes and codes[10901].severity == types.LogSeverity.WARNING
    assert 68 in codes  # created all the same
    state["s4"] = s4.id


def test_removal_failure_keeps_the_snapshot(sim, connection, state):
    snaps = snapshots_service(connection, state["vm"])
    content = sim.checksum("web1", "web1_os", snapshot=state["s4"])
    start = last_event(connection)
    sim.fault("snapshot-remove-fail")
    snaps.snapshot_service(state["s4"]).remove()
    wait_snapshot_ok(connection, state["vm"], state["s4"])
    codes = {e.code: e for e in events_since(connection, start, state["vm"])}
    assert 357 in codes and codes[357].severity == types.LogSeverity.ERROR and 356 not in codes
    assert sim.checksum("web1", "web1_os", snapshot=state["s4"]) == content
    snaps.snapshot_service(state["s4"]).remove()  # only that removal failed
    wait_gone(snaps.snapshot_service(state["s4"]).get, what="the removed snapshot")
