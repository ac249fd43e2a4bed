"""`kind: hypervisor-snapshots`: a policy that keeps VM snapshots on the engine, told apart from backup policies in
the document (fields that only mean something for backups are refused, naming the field) and in the selection (a VM
may be in one backup policy and in one snapshot policy at once, never in two of the same kind)."""
from __future__ import annotations

import pytest

from olvm_backup.policy.model import Policy, PolicyError, Schedule, parse_policy, policy_to_doc
from olvm_backup.policy.selection import VmView, evaluate
from olvm_backup.policy.store import check_explicit
from olvm_backup.retention import Rules

SNAP = {"kind": "hypervisor-snapshots", "vms": ["web1"], "retention": {"keep-last": 3},
        "schedules": [{"name": "hourly", "cron": "0 * * * *"}]}


def test_a_snapshot_policy_round_trips_and_a_policy_without_kind_is_a_backup_policy():
    policy = parse_policy(SNAP, name="snaps")
    assert policy.kind == "hypervisor-snapshots" and policy.retention == Rules(last=3)
    assert parse_policy(policy_to_doc(policy)) == policy
    assert parse_policy({"vms": ["web1"]}, name="gold").kind == "backup"


@pytest.mark.parametrize("field, value, where", [
    ("kind", "snapshot", "kind"),
    ("exclude_disks", ["*-swap"], "exclude_disks"),
    ("on_join", True, "on_join"),
    ("commands", [{"phase": "before", "run": ["sync"]}], "commands"),
    ("schedules", [{"name": "hourly", "cron": "0 * * * *", "mode": "full"}], "schedules[0].mode"),
])
def test_what_only_backups_use_is_refused_in_a_snapshot_policy_naming_the_field(field, value, where):
    with pytest.raises(PolicyError) as e:
        parse_policy({**SNAP, field: value}, name="snaps")
    assert e.value.field == where and "policy snaps" in str(e.value)


def test_a_vm_is_in_one_policy_of_each_kind():
    vms = [VmView("id-web1", "web1", "Default", frozenset({"gold"}))]
    hourly = [Schedule(name="hourly", cron="0 * * * *")]
    gold = Policy(name="gold", vms=["web1"], schedules=hourly)
    snaps = Policy(name="snaps", kind="hypervisor-snapshots", vms=["web1"], schedules=hourly)
    other = Policy(name="more-snaps", kind="hypervisor-snapshots", assignment="assign",
                   selection=parse_policy({"selection": {"include": [{"tag": "gold"}]}}, name="x").selection)
    evaluation = evaluate([gold, snaps, other], vms)
    assert [vm.name for vm in evaluation["gold"].holds] == ["web1"]
    assert [vm.name for vm in evaluation["snaps"].holds] == ["web1"]
    assert evaluation["more-snaps"].holds == [] and evaluation["more-snaps"].conflicts[0].held_by == "snaps"
    assert evaluation.owner["id-web1"] == "gold"
    check_explicit(snaps, [gold])  # another kind: allowed
    with pytest.raises(PolicyError, match="one hypervisor-snapshots policy"):
        check_explicit(Policy(name="snaps2", kind="hypervisor-snapshots", vms=["web1"]), [gold, snaps])


def test_the_readmes_snapshot_policy_reads():
    from pathlib import Path

    import yaml

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    example = readme.split("## Snapshot management", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    policy = parse_policy(yaml.safe_load(example), name="hourly")
    assert policy.kind == "hypervisor-snapshots" and policy.retention == Rules(last=24, within=2 * 86400)
