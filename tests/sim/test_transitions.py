"""Time on the engine (issue 17, item 10): power changes and snapshots pass through their transitional states for a
while (`olvm-sim serve --state-delay SECONDS`, or $OLVM_SIM_STATE_DELAY), so a client that polls sees them, and a
request that conflicts with a transition is refused as the engine refuses it. Only ovirtsdk4 talks to the simulator.

No assertion here depends on how fast the machine is: the tests record the states they see while polling and check
their order and the final state; only the test of a long delay checks that a state is still transitional one second
into a five-second transition."""
from __future__ import annotations

import time

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from .conftest import MIB, start_sim, wait_for, wait_gone

DELAY = 2
S = types.VmStatus


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """This module's own simulator, with transitions long enough to be seen by polling."""
    s = start_sim(tmp_path_factory.mktemp("sim"), args=("--state-delay", str(DELAY)))
    try:
        yield s
    finally:
        s.stop()


def new_vm(connection, name: str) -> types.Vm:
    return connection.system_service().vms_service().add(
        types.Vm(name=name, cluster=types.Cluster(name="Default"), memory=256 * MIB))


def watch(get, attr: str, done, timeout: float = 60) -> list:
    """Poll get() until done(value of attr); the distinct values seen, in order."""
    seen: list = []

    def probe():
        value = getattr(get(), attr)
        if not seen or seen[-1] != value:
            seen.append(value)
        return value

    wait_for(probe, done, timeout=timeout, interval=0.1, what=f"{attr} to settle; seen {seen}")
    return seen


def in_order(seen: list, allowed: list) -> bool:
    """seen is a subsequence of allowed (each state at most once, in the engine's order)."""
    positions = [allowed.index(s) for s in seen if s in allowed]
    return len(positions) == len(seen) and positions == sorted(positions) and len(set(positions)) == len(positions)


def codes_of(connection, vm_id: str) -> list[int]:
    """The VM's event codes, oldest first."""
    evs = [e for e in connection.system_service().events_service().list(max=1000) if e.vm and e.vm.id == vm_id]
    return [e.code for e in sorted(evs, key=lambda e: int(e.id))]


def start(connection, vm) -> list:
    svc = connection.system_service().vms_service().vm_service(vm.id)
    svc.start()
    return watch(svc.get, "status", lambda s: s == S.UP)


def test_start_passes_through_powering_up(connection):
    vm = new_vm(connection, "tr_start")
    seen = start(connection, vm)
    assert S.POWERING_UP in seen and seen[-1] == S.UP, seen
    assert in_order(seen, [S.DOWN, S.WAIT_FOR_LAUNCH, S.POWERING_UP, S.UP]), seen
    codes = [c for c in codes_of(connection, vm.id) if c in (153, 32)]
    assert codes == [153, 32], "USER_STARTED_VM when accepted, USER_RUN_VM (started on host) once it is up"


@pytest.mark.parametrize("action, first", [("stop", 33), ("shutdown", 73)])
def test_stop_and_shutdown_pass_through_powering_down(connection, action, first):
    vm = new_vm(connection, f"tr_{action}")
    start(connection, vm)
    svc = connection.system_service().vms_service().vm_service(vm.id)
    getattr(svc, action)()
    seen = watch(svc.get, "status", lambda s: s == S.DOWN)
    assert S.POWERING_DOWN in seen and seen[-1] == S.DOWN, seen
    assert in_order(seen, [S.UP, S.POWERING_DOWN, S.DOWN]), seen
    codes = [c for c in codes_of(connection, vm.id) if c in (33, 73, 61)]
    assert codes == [first, 61], f"{action}: event {first} when accepted, then 61 (VM is down) at the end"


def test_requests_that_conflict_with_a_transition_are_refused(connection):
    vm = new_vm(connection, "tr_conflict")
    svc = connection.system_service().vms_service().vm_service(vm.id)
    svc.start()
    with pytest.raises(sdk.Error) as refused:  # it is still on its way up
        svc.start()
    assert refused.value.code == 409 and "running" in str(refused.value)
    wait_for(svc.get, lambda v: v.status == S.UP, what="up")

    svc.shutdown()
    assert svc.get().status == S.POWERING_DOWN
    with pytest.raises(sdk.Error) as refused:  # on its way down: still running for the engine
        svc.start()
    assert refused.value.code == 409 and "running" in str(refused.value)
    svc.stop()  # a power-off while the guest shuts down is accepted
    wait_for(svc.get, lambda v: v.status == S.DOWN, what="down")
    with pytest.raises(sdk.Error) as refused:
        svc.stop()
    assert refused.value.code == 409 and "not running" in str(refused.value)


def test_snapshots_are_locked_while_created_and_removed(connection):
    vm = new_vm(connection, "tr_snap")
    snaps = connection.system_service().vms_service().vm_service(vm.id).snapshots_service()
    snap = snaps.add(types.Snapshot(description="tr"))
    seen = watch(snaps.snapshot_service(snap.id).get, "snapshot_status", lambda s: s == types.SnapshotStatus.OK)
    assert seen == [types.SnapshotStatus.LOCKED, types.SnapshotStatus.OK], seen

    svc = snaps.snapshot_service(snap.id)
    svc.remove()
    assert svc.get().snapshot_status == types.SnapshotStatus.LOCKED
    with pytest.raises(sdk.Error) as refused:  # already being removed
        svc.remove()
    assert refused.value.code == 409 and "locked" in str(refused.value)
    wait_gone(svc.get, what="the removed snapshot")


@pytest.mark.processes  # starts a simulator of its own
def test_the_delay_comes_from_the_environment_too(tmp_path_factory):
    """OLVM_SIM_STATE_DELAY=5: one second into a start and into a snapshot removal, both are still under way; both
    end."""
    s = start_sim(tmp_path_factory.mktemp("sim"), env={"OLVM_SIM_STATE_DELAY": "5"})
    try:
        connection = s.connect()
        try:
            vm = new_vm(connection, "tr_slow")
            vms = connection.system_service().vms_service()
            snaps = vms.vm_service(vm.id).snapshots_service()
            snap = snaps.add(types.Snapshot(description="slow"))
            wait_for(snaps.snapshot_service(snap.id).get, lambda x: x.snapshot_status == types.SnapshotStatus.OK,
                     what="snapshot ok")
            vms.vm_service(vm.id).start()
            snaps.snapshot_service(snap.id).remove()
            time.sleep(1)
            assert vms.vm_service(vm.id).get().status in (S.WAIT_FOR_LAUNCH, S.POWERING_UP)
            assert snaps.snapshot_service(snap.id).get().snapshot_status == types.SnapshotStatus.LOCKED
            wait_for(vms.vm_service(vm.id).get, lambda v: v.status == S.UP, what="up")
            wait_gone(snaps.snapshot_service(snap.id).get, what="the removed snapshot")
        finally:
            connection.close()
    finally:
        s.stop()
