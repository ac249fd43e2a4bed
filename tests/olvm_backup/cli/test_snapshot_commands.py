"""`olvm-backup snapshots VM ...` as an admin runs it (main() in process) against the simulator and moto: list tells
ours from a user's, create records ours, remove refuses a user's snapshot without --force, revert and clone refuse a
running VM with the message that says what to do, revert brings the disk back to the snapshot's content and clone
makes a VM whose disk holds it; create --quiesce removes a snapshot the guest could not be frozen for; policy run of
a snapshot policy keeps only its own."""
from __future__ import annotations

import asyncio
import dataclasses
import json

import ovirtsdk4.types as types
import pytest

from olvm_backup.cli.main import main
from olvm_backup.config import Settings, to_environ
from olvm_backup.policy.model import Policy
from olvm_backup.policy.store import save_policy
from olvm_backup.repository.sealedstore import open_sealed
from olvm_backup.retention import Rules
from tests.cli_env import olvm_environ
from tests.conftest import plain_repository
from tests.sim.conftest import engine_snapshots, module_sim, user_snapshot, vm_by_name, vm_disks, wait_gone
from tests.sim_engine import engine_settings
from tests.twins import MemoryBus

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    yield from module_sim(tmp_path_factory)


@pytest.fixture
def olvm(sim, s3_settings, tmp_path, monkeypatch, capsys):
    """Runs `olvm-backup ARGS` in process against the simulator and a fresh plain repository: (rc, out, err)."""
    settings = dataclasses.replace(Settings(), data_dir=tmp_path / "data", s3=s3_settings,
                                   engine=engine_settings(sim))
    settings = dataclasses.replace(settings, repository=dataclasses.replace(settings.repository, encrypt=False))
    plain_repository(settings)
    olvm_environ(monkeypatch, to_environ(settings))

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main(list(args))
        out, err = capsys.readouterr()
        return rc, out, err
    run.settings = settings
    return run


def save_policy_in(settings: Settings, policy: Policy) -> None:
    """Stored as `policy create` stores it (its event goes to an in-memory bus: no broker in this module)."""
    async def save() -> None:
        async with open_sealed(settings) as (store, _):
            await save_policy(store, MemoryBus(), policy, "alice@host")
    asyncio.run(save())


def listed(olvm, vm_name: str) -> list[dict]:
    rc, out, err = olvm("snapshots", vm_name, "list", "--json")
    assert rc == 0, err
    return json.loads(out)["snapshots"]


def test_create_list_and_remove_touch_only_ours_unless_forced(sim, olvm):
    users = user_snapshot(sim, "db1", "before the upgrade")
    rc, out, err = olvm("snapshots", "db1", "create", "--description", "pre-patch")
    assert rc == 0, err
    ours = next(s for s in listed(olvm, "db1") if s["snapshot_id"] != users)
    assert "created" in out and ours["snapshot_id"] in out and "at rest" in out
    rows = {s["snapshot_id"]: s for s in listed(olvm, "db1")}
    assert set(rows) == set(engine_snapshots(sim, "db1")) == {users, ours["snapshot_id"]}
    assert rows[users]["ours"] is False and rows[users]["owner"] == "not ours"
    assert rows[ours["snapshot_id"]]["ours"] is True and rows[ours["snapshot_id"]]["description"].endswith("]")
    assert "pre-patch" in rows[ours["snapshot_id"]]["description"]
    assert rows[ours["snapshot_id"]]["disks"] == rows[users]["disks"] == ["db1_disk"]
    rc, out, _ = olvm("snapshots", "db1", "list")
    assert rc == 0 and "yes" in out and "before the upgrade" in out

    sim.fault("snapshot-remove-fail")  # the host fails the merge: said at once, and the snapshot stays ours
    rc, _, err = olvm("snapshots", "db1", "remove", ours["snapshot_id"])
    assert rc == 1 and "VM db1" in err and ours["snapshot_id"] in err and "could not remove it" in err
    assert [s["ours"] for s in listed(olvm, "db1") if s["snapshot_id"] == ours["snapshot_id"]] == [True]

    rc, _, err = olvm("snapshots", "db1", "remove", users)
    assert rc == 1 and "VM db1" in err and users in err and "not made by olvm-backup" in err and "--force" in err
    assert users in engine_snapshots(sim, "db1")
    rc, out, err = olvm("snapshots", "db1", "remove", ours["snapshot_id"])
    assert rc == 0, err
    assert set(engine_snapshots(sim, "db1")) == {users}  # waited until gone; the user's untouched
    rc, out, err = olvm("snapshots", "db1", "remove", users, "--force")
    assert rc == 0 and "not made by olvm-backup" in out, err
    assert engine_snapshots(sim, "db1") == {}


def test_a_description_that_only_looks_like_ours_is_not_ours(sim, olvm):
    fake = user_snapshot(sim, "db1", "olvm-backup by mallory [0b6a4b47-2a5d-4d4c-9a59-0c8a1c7d1e2f]")
    try:
        row = next(s for s in listed(olvm, "db1") if s["snapshot_id"] == fake)
        assert row["ours"] is False
        rc, _, err = olvm("snapshots", "db1", "remove", fake)
        assert rc == 1 and "not made by olvm-backup" in err
    finally:
        conn = sim.connect()
        svc = conn.system_service().vms_service().vm_service(vm_by_name(conn, "db1").id).snapshots_service()
        svc.snapshot_service(fake).remove()
        wait_gone(svc.snapshot_service(fake).get)
        conn.close()


def test_policy_run_of_a_snapshot_policy_takes_and_keeps_only_its_own(sim, olvm):
    users = user_snapshot(sim, "db1", "keep me")
    rc, _, err = olvm("snapshots", "db1", "create", "--description", "by hand")
    assert rc == 0, err
    by_hand = {s["snapshot_id"] for s in listed(olvm, "db1") if s["ours"]}
    policy = Policy(name="snaps", kind="hypervisor-snapshots", vms=["db1"], retention=Rules(last=1))
    save_policy_in(olvm.settings, policy)
    for _ in range(2):
        rc, out, err = olvm("policy", "run", "snaps")
        assert rc == 0, err
        assert "VM db1: snapshot" in out and "taken (at rest)" in out
    rows = listed(olvm, "db1")
    mine = [s for s in rows if s["owner"] == "policy snaps"]
    assert len(mine) == 1 and "policy snaps run by" in mine[0]["description"]  # keep-last 1 over its own
    assert {s["snapshot_id"] for s in rows} == {users, mine[0]["snapshot_id"], *by_hand}  # the others untouched


def test_create_quiesce_removes_a_snapshot_the_guest_was_not_frozen_for(sim, olvm):
    before = engine_snapshots(sim, "web1")
    sim.fault("freeze-fail")
    rc, out, err = olvm("snapshots", "web1", "create", "--quiesce")
    assert rc == 1 and "VM web1" in err and "could not freeze" in err and "removed" in err
    assert engine_snapshots(sim, "web1") == before
    rc, out, err = olvm("snapshots", "web1", "create", "--quiesce")  # the fault was for one snapshot
    assert rc == 0 and ", frozen)" in out, err
    rc, _, err = olvm("snapshots", "web1", "remove", listed(olvm, "web1")[-1]["snapshot_id"])
    assert rc == 0, err


def test_revert_and_clone_refuse_a_running_vm_saying_what_to_do(sim, olvm):
    rc, _, err = olvm("snapshots", "web1", "create")
    assert rc == 0, err
    snap = listed(olvm, "web1")[-1]["snapshot_id"]
    rc, _, err = olvm("snapshots", "web1", "revert", snap)
    assert rc == 1 and "VM web1" in err and "needs the VM down" in err and "--force" in err and "power" in err
    rc, _, err = olvm("snapshots", "web1", "clone", snap, "--name", "web1-copy")
    assert rc == 1 and "VM web1" in err and "needs the VM down" in err and "--force" in err
    conn = sim.connect()
    try:
        assert vm_by_name(conn, "web1").status == types.VmStatus.UP
        assert not conn.system_service().vms_service().list(search="name=web1-copy")
    finally:
        conn.close()
    rc, _, err = olvm("snapshots", "web1", "remove", snap)
    assert rc == 0, err


def test_revert_brings_back_the_snapshots_content_and_clone_makes_a_vm_holding_it(sim, olvm):
    """On the running web1: a snapshot, guest writes after it, a clone made while the VM runs (--force), then a
    revert with --force, which powers the VM off first."""
    at_snapshot = {disk: sim.checksum("web1", disk) for disk in ("web1_os", "web1_data")}
    rc, _, err = olvm("snapshots", "web1", "create", "--description", "golden")
    assert rc == 0, err
    snap = listed(olvm, "web1")[-1]["snapshot_id"]
    sim.write("web1", "web1_data", 2 * MIB, MIB, seed=7)  # the guest changes the disk after the snapshot
    assert sim.checksum("web1", "web1_data") != at_snapshot["web1_data"]

    rc, out, err = olvm("snapshots", "web1", "clone", snap, "--name", "web1-golden", "--force")
    assert rc == 0, err
    assert "while it runs (--force)" in out and "cloned into VM web1-golden" in out
    conn = sim.connect()
    try:
        clone = vm_by_name(conn, "web1-golden")
        assert clone.status == types.VmStatus.DOWN
        cloned = sorted(sim.checksum("web1-golden", disk) for disk in vm_disks(conn, clone))
        assert cloned == sorted(at_snapshot.values())
        assert vm_by_name(conn, "web1").status == types.VmStatus.UP
    finally:
        conn.close()

    rc, out, err = olvm("snapshots", "web1", "revert", snap, "--force")
    assert rc == 0, err
    assert "powering it off (--force)" in out and "reverted" in out
    assert {disk: sim.checksum("web1", disk) for disk in at_snapshot} == at_snapshot
