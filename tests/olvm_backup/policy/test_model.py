"""A policy document is read field by field: every malformed field is refused with a message naming the policy
and the field; a good one round-trips through policy_to_doc."""
from __future__ import annotations

import copy
import json

import pytest

from olvm_backup.policy.model import (
    Policy, PolicyError, Rule, Schedule, Selection, changed_fields, parse_policy, policy_to_doc,
)
from olvm_backup.retention import Rules

GOOD = {
    "name": "gold",
    "description": "production web and databases",
    "selection": {
        "include": [{"tag": "gold"}, {"name": "web-.*"}],
        "exclude": [{"name": ".*-test"}],
        "clusters": ["Default"],
    },
    "assignment": "assign_and_remove",
    "vms": ["db1", "7f0c9a1e-0000-4000-8000-000000000001"],
    "strategy": "cbt",
    "schedules": [
        {"name": "nightly", "cron": "0 2 * * 1-6", "timezone": "Europe/Paris", "mode": "incremental",
         "window_minutes": 120},
        {"name": "sunday", "cron": "0 2 * * 0", "timezone": "Europe/Paris", "mode": "full"},
    ],
    "exclude_disks": ["*-swap", "scratch*"],
    "quiesce": False,
    "on_join": True,
    "pre_command": "/usr/local/bin/freeze-app",
    "retention": {"keep-last": 7, "keep-daily": 14, "keep-within": "2d"},
}


def test_a_good_document_reads_every_field():
    policy = parse_policy(copy.deepcopy(GOOD))
    assert policy.name == "gold" and policy.description == "production web and databases"
    assert policy.selection == Selection(include=[Rule(tag="gold"), Rule(name="web-.*")],
                                         exclude=[Rule(name=".*-test")], clusters=["Default"])
    assert policy.assignment == "assign_and_remove"
    assert policy.vms == ["db1", "7f0c9a1e-0000-4000-8000-000000000001"]
    assert policy.schedules == [
        Schedule("nightly", "0 2 * * 1-6", "Europe/Paris", "incremental", 120),
        Schedule("sunday", "0 2 * * 0", "Europe/Paris", "full", 60),
    ]
    assert policy.exclude_disks == ["*-swap", "scratch*"]
    assert (policy.quiesce, policy.on_join) == (False, True)
    # 1.1's one-line pre_command is read as a node command of phase before (and written back as `commands`)
    assert [(c.phase, c.where, c.run) for c in policy.commands] == [("before", "node", ("/usr/local/bin/freeze-app",))]
    assert policy.assigned == [] and policy.strategy == "cbt"
    assert policy.retention == Rules(last=7, daily=14, within=2 * 86400)
    assert policy_to_doc(policy)["retention"] == GOOD["retention"]


def test_defaults_of_a_minimal_document():
    policy = parse_policy({"name": "bronze"})
    assert policy == Policy(name="bronze")
    assert policy.assignment == "disabled" and policy.quiesce and not policy.on_join and policy.schedules == []
    assert policy.retention.empty  # no retention: prune keeps every restore point of its VMs


def test_round_trip_through_json():
    policy = parse_policy(copy.deepcopy(GOOD))
    doc = policy_to_doc(policy)
    assert doc["v"] == [1, 2] and "kind" not in doc  # a backup policy's document: readable by a 1.0 reader
    assert parse_policy(json.loads(json.dumps(doc))) == policy
    assigned = Policy(name="silver", assignment="assign", assigned=["id-1", "id-2"])
    assert parse_policy(policy_to_doc(assigned)) == assigned


def _with(path: str, value, *, delete: bool = False) -> dict:
    doc = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        last = int(last)
    if delete:
        del node[last]
    else:
        node[last] = value
    return doc


MALFORMED = [
    # (path to change, value, the field the message names, a piece of the reason)
    ("schedules.1.cron", "bad", "schedules[1].cron", "'bad' is not a cron expression"),
    ("schedules.0.cron", "61 * * * *", "schedules[0].cron", "is not a cron expression"),
    ("schedules.0.cron", "0 0 * * * *", "schedules[0].cron", "5 fields"),
    ("schedules.0.cron", "0 0 30 2 *", "schedules[0].cron", "is not a cron expression"),
    ("schedules.0.cron", "@fortnightly", "schedules[0].cron", "aliases"),
    ("schedules.0.timezone", "Mars/Olympus", "schedules[0].timezone", "unknown time zone 'Mars/Olympus'"),
    ("schedules.0.mode", "differential", "schedules[0].mode", "'differential' is not one of full, incremental"),
    ("schedules.0.window_minutes", -5, "schedules[0].window_minutes", "-5"),
    ("schedules.0.window_minutes", "60", "schedules[0].window_minutes", "'60'"),
    ("schedules.1.name", "nightly", "schedules[1].name", "another schedule"),
    ("schedules.0.name", "Night Shift", "schedules[0].name", "not a valid name"),
    ("schedules.0.every", "day", "schedules[0].every", "unknown field"),
    ("selection.include.1.name", "web-(", "selection.include[1].name", "bad regular expression"),
    ("selection.exclude.0.name", "*-test", "selection.exclude[0].name", "bad regular expression"),
    ("selection.include.0", {"tag": "gold", "name": "x"}, "selection.include[0]", "exactly one of"),
    ("selection.include.0", {}, "selection.include[0]", "exactly one of"),
    ("selection.include.0", {"label": "x"}, "selection.include[0].label", "unknown field"),
    ("selection.include.0.tag", "", "selection.include[0].tag", "must not be empty"),
    ("selection.include", "gold", "selection.include", "a list of rules is expected"),
    ("selection.clusters", "Default", "selection.clusters", "a list is expected"),
    ("selection.owner", "me", "selection.owner", "unknown field"),
    ("strategy", "proxy", "strategy", "'proxy' is not available (cbt, snapshot)"),
    ("strategy", "export", "strategy", "'export' is not available (cbt, snapshot; "),
    ("assignment", "auto", "assignment", "'auto' is not one of disabled, assign, assign_and_remove"),
    ("vms", ["db1", "db1"], "vms[1]", "listed twice"),
    ("vms", [3], "vms[0]", "a string is expected"),
    ("exclude_disks", "swap", "exclude_disks", "a list is expected"),
    ("quiesce", "yes", "quiesce", "true or false"),
    ("on_join", 1, "on_join", "true or false"),
    ("pre_command", ["a"], "pre_command", "a string is expected"),
    ("owner", "me", "owner", "unknown field"),
    ("retention", 7, "retention", "a mapping is expected"),
    ("retention.keep-daily", -1, "retention.keep-daily", "-1 is not a count"),
    ("retention.keep-last", "3", "retention.keep-last", "'3' is not a count"),
    ("retention.keep-last", True, "retention.keep-last", "True is not a count"),
    ("retention.keep-within", "2 days", "retention.keep-within", "'2 days' is not a duration"),
    ("retention.keep-within", 2, "retention.keep-within", "2 is not a duration"),
    ("retention.keep-fortnightly", 2, "retention.keep-fortnightly", "unknown field"),
    ("v", [2, 0], "v", "not readable by this build"),
    ("v", "1.0", "v", "not a format version"),
    ("name", "Gold Policy", "name", "not a valid name"),
    ("name", "../keys", "name", "not a valid name"),
]


@pytest.mark.parametrize("path,value,field,reason", MALFORMED, ids=[m[2] + ":" + str(m[1]) for m in MALFORMED])
def test_a_malformed_field_is_refused_naming_it(path, value, field, reason):
    with pytest.raises(PolicyError) as caught:
        parse_policy(_with(path, value))
    message = str(caught.value)
    assert caught.value.field == field
    assert f": {field}: " in message, message
    assert reason in message, message


def test_a_missing_required_field_is_named():
    with pytest.raises(PolicyError, match=r"policy gold: schedules\[0\]\.cron: missing"):
        parse_policy(_with("schedules.0.cron", None, delete=True))
    with pytest.raises(PolicyError, match="policy \\?: name: missing"):
        parse_policy(_with("name", None, delete=True))
    with pytest.raises(PolicyError, match="a mapping is expected"):
        parse_policy(["name", "gold"])


def test_the_callers_name_fills_in_and_must_agree():
    doc = _with("name", None, delete=True)
    assert parse_policy(doc, name="gold").name == "gold"
    with pytest.raises(PolicyError, match="policy silver: name: the document names 'gold'"):
        parse_policy(copy.deepcopy(GOOD), name="silver")


def test_the_message_names_the_policy():
    with pytest.raises(PolicyError) as caught:
        parse_policy(_with("schedules.1.cron", "bad"))
    assert str(caught.value).startswith("policy gold: schedules[1].cron: 'bad' is not a cron expression (")


def test_changed_fields_lists_what_differs():
    a = parse_policy(copy.deepcopy(GOOD))
    b = parse_policy(_with("quiesce", True))
    assert changed_fields(a, b) == ["quiesce"]
    c = parse_policy(_with("schedules.0.cron", "0 3 * * 1-6"))
    assert changed_fields(a, c) == ["schedules"]
    assert changed_fields(a, a) == []


def test_the_readmes_example_policy_reads():
    """The README's "Policies" example is a valid document: incremental nightly, full every Sunday."""
    from pathlib import Path

    import yaml

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    example = readme.split("## Policies", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    policy = parse_policy(yaml.safe_load(example), name="gold")
    assert [(s.name, s.mode) for s in policy.schedules] == [("nightly", "incremental"), ("sunday", "full")]
