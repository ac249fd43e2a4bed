"""Snapshot chains as the disk image transfer strategy reads them (issue 21): shallow transfers of one layer, volume
ids through snapshots and merges, every volume as a disk snapshot of its storage domain.

The tests build on each other (one simulator for the module) and run in file order."""
from __future__ import annotations

import ovirtsdk4.types as types
import pytest
from ovirt_imageio import client

from .conftest import MIB, create_transfer, finalize_transfer, raw_sha256, vm_by_name, vm_disks, wait_for, wait_gone

KIB = 1024
DISK = "web1_data"  # 16 MiB cow; its base holds text over [0, 1 MiB)
# What the guest writes between the two snapshots: (offset, length, zero)
LAYER = [(4 * MIB, 256 * KIB, False), (0, 64 * KIB, True), (10 * MIB, 128 * KIB, False)]


@pytest.fixture(scope="module")
def state():
    """What the earlier tests of this module leave for the later ones."""
    return {}


def snapshots_service(connection, vm_id):
    return connection.system_service().vms_service().vm_service(vm_id).snapshots_service()


def take_snapshot(connection, vm_id, description) -> types.Snapshot:
    svc = snapshots_service(connection, vm_id)
    snap = svc.add(types.Snapshot(description=description, persist_memorystate=False))
    return wait_for(svc.snapshot_service(snap.id).get, lambda s: s.snapshot_status == types.SnapshotStatus.OK,
                    timeout=60, what=f"snapshot {description} ok")


def remove_snapshot(connection, vm_id, snapshot_id) -> None:
    svc = snapshots_service(connection, vm_id).snapshot_service(snapshot_id)
    svc.remove()
    wait_gone(svc.get, what=f"snapshot {snapshot_id} removed")


def disk_now(connection, disk_id) -> types.Disk:
    return connection.system_service().disks_service().disk_service(disk_id).get()


def domain_volumes(connection, sd_id, include_active=True) -> list[types.DiskSnapshot]:
    return connection.system_service().storage_domains_service().storage_domain_service(sd_id) \
        .disk_snapshots_service().list(include_active=include_active)


def merged_extents(extents) -> list[tuple[int, int, bool, bool]]:
    """(start, length, zero, hole), adjacent extents with the same flags joined (imageio may split them)."""
    out: list[list] = []
    for e in extents:
        if out and out[-1][0] + out[-1][1] == e.start and (out[-1][2], out[-1][3]) == (e.zero, e.hole):
            out[-1][1] += e.length
        else:
            out.append([e.start, e.length, e.zero, e.hole])
    return [tuple(x) for x in out]


def test_snapshot_gives_the_active_layer_a_new_volume_id(sim, connection, state):
    web1 = vm_by_name(connection, "web1")
    disk = vm_disks(connection, web1)[DISK]
    before = disk.image_id
    snap1 = take_snapshot(connection, web1.id, "chain-1")
    after = disk_now(connection, disk.id).image_id
    assert after and after != before, "the active layer kept its volume id through a snapshot"
    # The snapshot's disk is the frozen volume: its image id is the one the disk had.
    held = snapshots_service(connection, web1.id).snapshot_service(snap1.id).disks_service().list()
    assert {d.id: d.image_id for d in held}[disk.id] == before
    state.update(vm=web1.id, disk=disk.id, sd=disk.storage_domains[0].id, snap1=snap1.id, v0=before, v1=after)


def test_every_volume_is_a_disk_snapshot_of_its_domain(sim, connection, state):
    volumes = {v.id: v for v in domain_volumes(connection, state["sd"]) if v.disk.id == state["disk"]}
    assert set(volumes) == {state["v0"], state["v1"]}
    base, active = volumes[state["v0"]], volumes[state["v1"]]
    assert base.parent is None and active.parent.id == state["v0"]
    assert base.snapshot.id == state["snap1"] and base.image_id == state["v0"]
    active_snapshot = next(s for s in snapshots_service(connection, state["vm"]).list()
                           if s.snapshot_type == types.SnapshotType.ACTIVE)
    assert active.snapshot.id == active_snapshot.id
    assert base.actual_size > MIB and 0 < active.actual_size < base.actual_size  # the base holds the 1 MiB of text
    assert base.provisioned_size == active.provisioned_size == 16 * MIB
    # Without include_active only the snapshots' volumes; any volume can be fetched by its id.
    assert {v.id for v in domain_volumes(connection, state["sd"], include_active=False)
            if v.disk.id == state["disk"]} == {state["v0"]}
    one = connection.system_service().storage_domains_service().storage_domain_service(state["sd"]) \
        .disk_snapshots_service().snapshot_service(state["v1"]).get()
    assert one.disk.id == state["disk"]


def test_shallow_transfer_shows_only_the_layer(sim, connection, state, tmp_path):
    for offset, length, zero in LAYER:
        args = ["write", "web1", DISK, "--offset", str(offset), "--length", str(length)]
        sim.cli(*args, *(["--zero"] if zero else ["--seed", str(offset)]))
    snap2 = take_snapshot(connection, state["vm"], "chain-2")
    state.update(snap2=snap2.id, v2=disk_now(connection, state["disk"]).image_id)
    t = create_transfer(connection, snapshot=types.DiskSnapshot(id=state["v1"]), shallow=True,
                        direction=types.ImageTransferDirection.DOWNLOAD)
    assert t.phase == types.ImageTransferPhase.TRANSFERRING
    with client.ImageioClient(t.transfer_url, cafile=sim.ca_file) as c:
        extents = merged_extents(c.extents("zero"))
    finalize_transfer(connection, t)
    # Data where the guest wrote, zero-not-hole where it wrote zeros over the base's text, a hole elsewhere.
    assert extents == [(0, 64 * KIB, True, False), (64 * KIB, 4 * MIB - 64 * KIB, True, True),
                       (4 * MIB, 256 * KIB, False, False), (4 * MIB + 256 * KIB, 6 * MIB - 256 * KIB, True, True),
                       (10 * MIB, 128 * KIB, False, False), (10 * MIB + 128 * KIB, 6 * MIB - 128 * KIB, True, True)]


def test_full_transfer_of_a_disk_snapshot_gives_the_chain_up_to_it(sim, connection, state, tmp_path):
    t = create_transfer(connection, snapshot=types.DiskSnapshot(id=state["v1"]), shallow=False,
                        direction=types.ImageTransferDirection.DOWNLOAD)
    with client.ImageioClient(t.transfer_url, cafile=sim.ca_file) as c:
        extents = merged_extents(c.extents("zero"))
    dest = tmp_path / "chain.raw"
    client.download(t.transfer_url, str(dest), sim.ca_file, fmt="raw")
    finalize_transfer(connection, t)
    # The base's text behind the layer is data here (a hole in the shallow view).
    assert (64 * KIB, MIB - 64 * KIB, False, False) in extents, extents
    assert raw_sha256(dest, tmp_path) == sim.checksum("web1", DISK, snapshot=state["snap2"])


def test_merge_keeps_the_removed_snapshots_volume_id(sim, connection, state):
    """A removal is a backward merge: the removed snapshot's volume survives, with its id, in its child's place."""
    content = sim.checksum("web1", DISK, snapshot=state["snap2"])
    remove_snapshot(connection, state["vm"], state["snap1"])
    held = snapshots_service(connection, state["vm"]).snapshot_service(state["snap2"]).disks_service().list()
    assert {d.id: d.image_id for d in held}[state["disk"]] == state["v0"]
    assert disk_now(connection, state["disk"]).image_id == state["v2"]
    assert sim.checksum("web1", DISK, snapshot=state["snap2"]) == content
    chain = {v.id: v for v in domain_volumes(connection, state["sd"]) if v.disk.id == state["disk"]}
    assert set(chain) == {state["v0"], state["v2"]} and chain[state["v2"]].parent.id == state["v0"]
    # SnapshotService.get has no all_content argument: the query parameter asks for the OVF.
    snap2 = snapshots_service(connection, state["vm"]).snapshot_service(state["snap2"])
    ovf = snap2.get(query={"all_content": "true"}).initialization.configuration.data
    assert state["v0"] in ovf and state["v1"] not in ovf  # the snapshot's configuration names its volume
    # The last snapshot merged into the active layer: the disk is back on the base volume's id.
    remove_snapshot(connection, state["vm"], state["snap2"])
    assert disk_now(connection, state["disk"]).image_id == state["v0"]
