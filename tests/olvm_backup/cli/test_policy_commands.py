"""`olvm-backup policy ...` as an admin runs it, in process, against the in-memory store and bus: a malformed
policy is refused naming the field and stores nothing; list, show (with and without an engine), edit, assign,
unassign, delete and run; every change is a PolicyEvent by user@host."""
from __future__ import annotations

import asyncio
import contextlib

import pytest

from olvm_backup.cli import policies as cli_policies
from olvm_backup.cli.main import main
from olvm_backup.objectstore.memory import MemoryStore
from olvm_backup.policy.selection import VmView
from olvm_backup.policy.store import get_policy
from schemas.topics import BACKUP_REQUESTS, POLICY_EVENTS
from tests.cli_env import olvm_environ
from tests.twins import MemoryBus

GOLD_YAML = """\
description: web servers, tagged gold
selection:
  include:
    - tag: gold
    - name: "web-.*"
  exclude:
    - name: ".*-test"
assignment: assign_and_remove
vms: [db1]
schedules:
  - name: nightly
    cron: "0 2 * * 1-6"
    timezone: Europe/Paris
    mode: incremental
  - name: sunday
    cron: "0 2 * * 0"
    timezone: Europe/Paris
    mode: full
exclude_disks: ["*-swap"]
"""
VMS = [VmView("id-web-1", "web-1", "Default", frozenset()), VmView("id-web-1-test", "web-1-test", "Default"),
       VmView("id-db1", "db1", "Default"), VmView("id-app", "app", "Default", frozenset({"gold"})),
       VmView("id-mail", "mail", "Default")]


@pytest.fixture
def twins(monkeypatch, tmp_path):
    """The CLI's store and bus, in memory; settings only from the variables a test sets; no engine."""
    olvm_environ(monkeypatch, {"OLVM_DATA_DIR": str(tmp_path / "data")})
    store, bus = MemoryStore(), MemoryBus()

    @contextlib.asynccontextmanager
    async def open_repository(settings):
        yield store

    @contextlib.asynccontextmanager
    async def open_bus(settings):
        yield bus

    monkeypatch.setattr(cli_policies, "open_repository", open_repository)
    monkeypatch.setattr(cli_policies, "open_bus", open_bus)
    monkeypatch.setattr(cli_policies, "actor", lambda: "alice@host")
    return store, bus


def _file(tmp_path, text: str, name: str = "policy.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _keys(store) -> list[str]:
    async def keys():
        return [i.key async for i in store.list("")]
    return asyncio.run(keys())


def test_a_malformed_policy_is_refused_naming_the_field_and_nothing_is_stored(twins, tmp_path, capsys):
    store, bus = twins
    cases = [
        (GOLD_YAML.replace('"0 2 * * 0"', '"0 2 * * sunday-ish"'), "policy gold: schedules[1].cron: "),
        (GOLD_YAML.replace('"web-.*"', '"web-("'), "policy gold: selection.include[1].name: bad regular expression"),
        (GOLD_YAML + "strategy: proxy\n", "policy gold: strategy: 'proxy' is not available (cbt, snapshot)"),
        (GOLD_YAML.replace("Europe/Paris", "Europe/Atlantis", 1), "policy gold: schedules[0].timezone: unknown"),
        ("selection: [\n", "is not YAML"),
    ]
    for text, message in cases:
        assert main(["policy", "create", "gold", "--file", _file(tmp_path, text)]) == 1
        err = capsys.readouterr().err
        assert message in err, err
    assert _keys(store) == [] and bus.records(POLICY_EVENTS) == []


def test_an_explicit_vm_of_another_policy_is_refused(twins, tmp_path, capsys):
    store, bus = twins
    assert main(["policy", "create", "gold", "--file", _file(tmp_path, GOLD_YAML)]) == 0
    assert main(["policy", "create", "silver", "--file", _file(tmp_path, "vms: [mail, db1]\n")]) == 1
    assert "policy silver: vms[1]: VM 'db1' is already assigned to policy gold" in capsys.readouterr().err
    assert main(["policy", "create", "gold", "--file", _file(tmp_path, GOLD_YAML)]) == 1
    assert "policy gold: exists already" in capsys.readouterr().err
    assert _keys(store) == ["policies/gold"] and len(bus.records(POLICY_EVENTS)) == 1


def test_create_list_show_without_an_engine(twins, tmp_path, capsys):
    store, bus = twins
    assert main(["policy", "create", "gold", "--file", _file(tmp_path, GOLD_YAML)]) == 0
    assert "policy gold created" in capsys.readouterr().out
    [created] = bus.records(POLICY_EVENTS)
    assert (created.policy, created.action, created.actor) == ("gold", "created", "alice@host")

    assert main(["policy", "list"]) == 0
    out = capsys.readouterr().out
    assert "gold" in out and "assign_and_remove" in out and "nightly,sunday" in out

    assert main(["policy", "show", "gold"]) == 0
    out = capsys.readouterr().out
    assert "tag: gold" in out and "exclude_disks:" in out
    assert "engine not configured" in out
    assert "next run of nightly (0 2 * * 1-6, incremental): " in out and " UTC)" in out
    assert "next run of sunday (0 2 * * 0, full): " in out
    assert main(["policy", "show", "bronze"]) == 1
    assert "policy bronze: no such policy" in capsys.readouterr().err


def test_show_lists_the_vms_it_selects_now(twins, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OLVM_ENGINE_URL", "https://engine.example/ovirt-engine/api")

    async def engine_vms(settings):
        return VMS
    monkeypatch.setattr(cli_policies, "engine_vms", engine_vms)
    assert main(["policy", "create", "gold", "--file", _file(tmp_path, GOLD_YAML)]) == 0
    assert main(["policy", "create", "aaa", "--file", _file(tmp_path, "vms: [mail]\nassignment: assign\n"
                                                            "selection: {include: [{name: app}]}\n")]) == 0
    capsys.readouterr()
    assert main(["policy", "show", "gold"]) == 0
    out = capsys.readouterr().out
    assert "VMs it holds now: 2" in out
    held = [line.split()[0] for line in out.splitlines() if line.startswith("  ") and "tags" in line]
    assert held == ["db1", "web-1"]  # app is held by aaa (first by name); web-1-test excluded
    assert "conflict: VM app (id-app) is held by policy aaa; policy gold selects it too" in out


def test_edit_assign_unassign_delete_each_publish_who_and_what(twins, tmp_path, capsys):
    store, bus = twins
    assert main(["policy", "create", "gold", "--file", _file(tmp_path, GOLD_YAML)]) == 0
    asyncio.run(_set_assigned(store, ["id-web-1"]))
    edited = GOLD_YAML.replace("mode: incremental", "mode: auto")
    assert main(["policy", "edit", "gold", "--file", _file(tmp_path, edited)]) == 0
    assert "policy gold updated: schedules" in capsys.readouterr().out
    assert asyncio.run(get_policy(store, "gold")).assigned == ["id-web-1"]  # the scheduler's state is kept
    assert main(["policy", "assign", "gold", "mail"]) == 0
    assert main(["policy", "unassign", "gold", "db1"]) == 0
    assert main(["policy", "unassign", "gold", "nobody"]) == 1
    assert "policy gold: vms: 'nobody' is not assigned explicitly" in capsys.readouterr().err
    assert asyncio.run(get_policy(store, "gold")).vms == ["mail"]
    assert main(["policy", "delete", "gold"]) == 0
    assert _keys(store) == []
    events = bus.records(POLICY_EVENTS)
    assert [(e.action, e.actor) for e in events] == [
        ("created", "alice@host"), ("updated", "alice@host"), ("assigned", "alice@host"),
        ("unassigned", "alice@host"), ("deleted", "alice@host")]
    assert events[1].detail == {"fields": ["schedules"]}
    assert events[2].detail["vm"] == "mail" and events[3].detail["vm"] == "db1"
    assert main(["policy", "delete", "gold"]) == 1


async def _set_assigned(store, assigned):
    from dataclasses import replace

    from olvm_backup.policy.store import save_policy
    policy = await get_policy(store, "gold")
    await save_policy(store, MemoryBus(), replace(policy, assigned=assigned), "scheduler")


def test_run_requests_a_backup_of_every_vm_it_holds(twins, tmp_path, capsys):
    store, bus = twins
    assert main(["policy", "create", "gold", "--file", _file(tmp_path, GOLD_YAML)]) == 0
    asyncio.run(_set_assigned(store, ["id-web-1"]))
    capsys.readouterr()
    assert main(["policy", "run", "gold", "--mode", "full"]) == 0
    out = capsys.readouterr().out
    requests = bus.records(BACKUP_REQUESTS)
    assert sorted(r.vm for r in requests) == ["db1", "id-web-1"]
    for r in requests:
        assert r.policy == "gold" and r.mode == "full" and r.exclude_disks == ["*-swap"]
        assert r.requested_by == "policy gold: run by alice@host"
        assert f"requested: {r.request_id}" in out
    assert main(["policy", "run", "gold"]) == 0  # another run: new ids
    assert len({r.request_id for r in bus.records(BACKUP_REQUESTS)}) == 4
