"""Pre/post command specs read and checked (pure): every field, its errors naming the field, the command line's
one-line form, the round trip through a document; and how a run is judged (exit codes, stderr policies, timeout)."""
from __future__ import annotations

import pytest

from olvm_backup.commands import parse_cli, parse_spec, spec_to_doc
from olvm_backup.commands.spec import SpecError, parse_exit_codes
from olvm_backup.commands.verdict import Ran, judge

GUEST = {"phase": "before", "where": "guest", "run": ["/usr/local/bin/db-flush", "--all"], "host": "db1.example",
         "user": "backup", "port": 2222, "key_file": "/etc/olvm-backup/keys/db1",
         "known_hosts": "/etc/olvm-backup/known_hosts/db1", "timeout": "2m", "ignore_exit": "15,101-150",
         "stderr": "fail", "env": {"MODE": "fast"}, "name": "flush db"}


def test_a_guest_spec_reads_every_field_and_writes_back_equal():
    spec = parse_spec(GUEST)
    assert (spec.phase, spec.where, spec.run, spec.timeout, spec.stderr, spec.env, spec.label) == \
        ("before", "guest", ("/usr/local/bin/db-flush", "--all"), 120.0, "fail", (("MODE", "fast"),), "flush db")
    assert spec.guest is not None and (spec.guest.host, spec.guest.port, spec.guest.user) == ("db1.example", 2222,
                                                                                            "backup")
    assert parse_spec(spec_to_doc(spec)) == spec


@pytest.mark.parametrize("text, inside, outside", [
    ("15,101-150", [15, 101, 120, 150], [0, 14, 16, 100, 151]),
    ("*", [1, 2, 255], []),
    ("", [], [1, 15]),
    ("3", [3], [4]),
])
def test_exit_codes_to_ignore(text, inside, outside):
    codes = parse_exit_codes(text)
    assert all(c in codes for c in inside) and not any(c in codes for c in outside)


@pytest.mark.parametrize("change, where, says", [
    ({"phase": "during"}, "command.phase", "'during' is not one of before, after, after-backup"),
    ({"where": "host"}, "command.where", "not node or guest"),
    ({"stderr": "loud"}, "command.stderr", "not one of fail, warn, ignore"),
    ({"timeout": 0}, "command.timeout", "not a timeout"),
    ({"timeout": "soon"}, "command.timeout", "not a duration"),
    ({"ignore_exit": "15,300"}, "command.ignore_exit", "'300' is not an exit code"),
    ({"ignore_exit": "1-x"}, "command.ignore_exit", "not an exit code"),
    ({"run": []}, "command.run", "the command is expected"),
    ({"run": "a 'b"}, "command.run", "cannot split"),
    ({"known_hosts": None, "host_key": None}, "command", "exactly one of known_hosts"),
    ({"host_key": "ssh-ed25519 AAAAC3Nza"}, "command", "exactly one of known_hosts"),
    ({"key_file": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl"}, "command.key_file", "never its content"),
    ({"key_file": "keys/db1"}, "command.key_file", "not an absolute path"),
    ({"port": 70000}, "command.port", "not a TCP port"),
    ({"env": {"DB_PASSWORD": "x"}}, "command.env.DB_PASSWORD", "looks like a secret"),
    ({"env": {"OLVM_VM": "x"}}, "command.env.OLVM_VM", "set by olvm-backup itself"),
    ({"env": {"1X": "x"}}, "command.env", "not an environment variable name"),
    ({"password": "x"}, "command.password", "unknown field"),
])
def test_a_bad_spec_is_refused_naming_the_field(change, where, says):
    doc = {k: v for k, v in {**GUEST, **change}.items() if v is not None}
    with pytest.raises(SpecError) as e:
        parse_spec(doc)
    assert e.value.where == where and says in str(e.value), str(e.value)


def test_a_guest_needs_its_host_key_pinned_and_a_node_command_takes_no_guest_fields():
    with pytest.raises(SpecError, match="exactly one of known_hosts"):
        parse_spec({k: v for k, v in GUEST.items() if k != "known_hosts"})
    with pytest.raises(SpecError, match="key_file: missing"):
        parse_spec({k: v for k, v in GUEST.items() if k != "key_file"})
    with pytest.raises(SpecError, match="only for where: guest"):
        parse_spec({"phase": "before", "run": ["sync"], "host": "db1"})


def test_the_command_lines_one_line_form():
    spec = parse_cli("phase=after,where=guest,host=db1,key=/k/db1,host-key=ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI,"
                     "timeout=30,ignore=15,101-150,stderr=ignore,env.LIST=a,b -- /usr/bin/db-resume --now 'x y'")
    assert spec.run == ("/usr/bin/db-resume", "--now", "x y") and spec.phase == "after" and spec.timeout == 30
    assert 120 in spec.ignore_exit and 16 not in spec.ignore_exit and spec.env == (("LIST", "a,b"),)
    assert spec.guest is not None and spec.guest.host_key.startswith("ssh-ed25519 ")
    node = parse_cli("phase=before -- sync")
    assert (node.where, node.run, node.timeout, node.stderr) == ("node", ("sync",), 300.0, "warn")
    for bad, says in (("phase=before sync", "OPTIONS -- COMMAND"), ("phase=before,timeout=1,timeout=2 -- x",
                                                                   "given twice"),
                      ("phase=before,run=x -- y", "not an option here")):
        with pytest.raises(SpecError, match=says):
            parse_cli(bad)


def spec(**kw):
    return parse_spec({"phase": "before", "run": ["x"], **kw})


@pytest.mark.parametrize("kw, ran, status, says", [
    ({}, Ran(0), "ok", "ran in"),
    ({}, Ran(3, stderr=b"db busy\n"), "failed", "exited 3; stderr: db busy"),
    ({"ignore_exit": "1-5"}, Ran(3), "warned", "exited 3, an exit code it ignores"),
    ({"ignore_exit": "*"}, Ran(200), "warned", "exited 200"),
    ({"stderr": "fail"}, Ran(0, stderr=b"careful\n"), "failed", "wrote to stderr (stderr: fail): careful"),
    ({"stderr": "warn"}, Ran(0, stderr=b"careful\n"), "warned", "wrote to stderr: careful"),
    ({"stderr": "ignore"}, Ran(0, stderr=b"careful\n"), "ok", "ran in"),
    ({"timeout": 5}, Ran(None, timed_out=True), "failed", "still running after its timeout of 5s: killed"),
    ({}, Ran(None, error="no such file"), "failed", "could not run: no such file"),
])
def test_a_run_is_judged_by_its_spec(kw, ran, status, says):
    result = judge(spec(**kw), ran)
    assert result.status == status and says in result.message, result.message


def test_the_output_tail_is_bounded():
    result = judge(spec(), Ran(0, stdout=b"x" * 5000 + b"END"))
    assert result.stdout_tail.endswith("END") and len(result.stdout_tail) <= 1003
