"""A policy's pre/post commands (pure): per policy and per VM in the document, checked naming the field, carried by
the backup requests it sends (backup phases only) and found for a restore of a VM it holds (restore phases)."""
from __future__ import annotations

import pytest

from olvm_backup.policy.model import PolicyError, parse_policy, policy_to_doc
from olvm_backup.policy.requests import backup_request, restore_commands
from olvm_backup.policy.selection import VmView

DOC = {"vms": ["db1"], "commands": [{"phase": "before", "run": "sync"}],
       "vm_commands": {"db1": [{"phase": "before", "where": "guest", "run": ["db-flush"], "host": "db1.example",
                                "key_file": "/etc/olvm-backup/keys/db1",
                                "known_hosts": "/etc/olvm-backup/known_hosts/db1"},
                               {"phase": "after-restore", "run": ["notify"]}],
                       "web1": [{"phase": "after", "run": ["web-resume"]}]}}


def test_the_policys_then_the_vms_own_commands_go_with_its_requests():
    policy = parse_policy(DOC, name="gold")
    assert parse_policy(policy_to_doc(policy), name="gold") == policy
    request = backup_request(policy, VmView("id-db1", "db1"), cause="x", request_id="r", now=0.0)
    assert [(c.phase, c.where, c.run) for c in request.commands] == [
        ("before", "node", ["sync"]), ("before", "guest", ["db-flush"])]
    assert request.commands[1].key_file == "/etc/olvm-backup/keys/db1"
    assert [c.run for c in backup_request(policy, VmView("id-web1", "web1"), cause="x", request_id="r",
                                          now=0.0).commands] == [["sync"], ["web-resume"]]


def test_a_restore_gets_the_restore_commands_of_the_policy_holding_its_vm():
    policy = parse_policy(DOC, name="gold")
    assert [c.run for c in restore_commands([policy], "id-db1", "db1")] == [("notify",)]
    assert restore_commands([policy], "id-other", "other") == []


@pytest.mark.parametrize("doc, field", [
    ({"commands": [{"phase": "before"}]}, "commands[0].run"),
    ({"vm_commands": {"db1": [{"phase": "before", "run": "x", "timeout": -1}]}}, "vm_commands.db1[0].timeout"),
    ({"vm_commands": ["db1"]}, "vm_commands"),
    ({"commands": [{"phase": "before", "where": "guest", "run": "x", "host": "h", "key_file": "/k"}]},
     "commands[0]"),
])
def test_a_bad_command_is_refused_naming_the_field(doc, field):
    with pytest.raises(PolicyError) as e:
        parse_policy(doc, name="gold")
    assert e.value.field == field, str(e.value)
