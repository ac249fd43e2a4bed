"""A backup's pre/post commands in the snapshotter (services/snapshotter/commands.py), with real node commands:
each phase runs once, `after` runs on any end once `before` was reached and never when it was not, a failing
`before` raises with the command's message, the old global hooks are node commands of their phases."""
from __future__ import annotations

import time

import pytest

from olvm_backup.commands import parse_spec
from olvm_backup.config import PipelineSettings, Settings
from schemas import BackupRequest
from schemas.records import CommandSpec as Part
from services.snapshotter.commands import BackupCommands, CommandFailed, request_specs
from services.snapshotter.steps import StepTimes

pytestmark = pytest.mark.processes  # small node commands


def commands(tmp_path, *specs: dict) -> tuple[BackupCommands, list[tuple[str, str]]]:
    events: list[tuple[str, str]] = []

    async def event(kind: str, message: str, **_) -> None:
        events.append((kind, message))

    parsed = [parse_spec({"run": ["sh", "-c", f"echo $OLVM_PHASE $OLVM_RESULT >> {tmp_path / 'ran'}; {s.pop('sh')}"],
                          **s}) for s in specs]
    return BackupCommands(parsed, steps=StepTimes(), event=event, env=lambda: {"OLVM_VM": "db1"}), events


def ran(tmp_path) -> list[str]:
    path = tmp_path / "ran"
    return [line.strip() for line in path.read_text().splitlines()] if path.exists() else []


async def test_each_phase_runs_once_and_after_backup_says_the_result(tmp_path):
    c, events = commands(tmp_path, {"phase": "before", "sh": "true"}, {"phase": "after", "sh": "true"},
                         {"phase": "after-backup", "sh": "true"})
    await c.before()
    await c.before()  # a second call (a retried step) runs nothing again
    await c.after()
    await c.ended("completed")
    await c.ended("completed")
    assert ran(tmp_path) == ["before", "after", "after-backup completed"]
    assert [m.split(" (")[0] for _, m in events] == ["node command 'sh'"] * 3


async def test_a_failing_before_raises_its_message_and_its_after_runs_at_the_end(tmp_path):
    c, events = commands(tmp_path, {"phase": "before", "sh": "echo locked >&2; exit 7"},
                         {"phase": "after", "sh": "true"})
    with pytest.raises(CommandFailed, match=r"node command 'sh' \(before\) exited 7; stderr: locked"):
        await c.before()
    await c.ended("failed")
    assert ran(tmp_path) == ["before", "after failed"]
    assert events[0][1].startswith("failed: ") and events[1][1].startswith("node command")


async def test_after_does_not_run_when_the_backup_ended_before_its_before(tmp_path):
    c, _ = commands(tmp_path, {"phase": "before", "sh": "true"}, {"phase": "after", "sh": "true"},
                    {"phase": "after-backup", "sh": "true"})
    await c.ended("failed")  # e.g. the VM was not found
    assert ran(tmp_path) == ["after-backup failed"]


async def test_a_failing_after_is_a_warning(tmp_path):
    c, events = commands(tmp_path, {"phase": "after", "sh": "exit 1"})
    await c.after()
    assert events[0][1].startswith("warning: node command 'sh' (after) exited 1")


def test_the_global_hooks_are_node_commands_before_the_requests_own():
    settings = Settings(pipeline=PipelineSettings(pre_backup_hook="/usr/local/bin/flush --all",
                                                  post_backup_hook="/usr/local/bin/notify"))
    request = BackupRequest(request_id="r", vm="db1", requested_at=time.time(),
                            commands=[Part(phase="after", run=["resume"]), Part(phase="after-restore", run=["x"])])
    specs = request_specs(request, settings)
    assert [(s.phase, s.where, s.run) for s in specs] == [
        ("before", "node", ("/usr/local/bin/flush", "--all")), ("after-backup", "node", ("/usr/local/bin/notify",)),
        ("after", "node", ("resume",))]


def test_a_killed_backups_event_says_when_its_before_ran_without_its_after():
    from services.snapshotter.commands import held_note
    assert "may be held" in held_note(["before"])
    assert held_note(["before", "after"]) == held_note([]) == ""


async def test_the_journal_names_the_phases_started(tmp_path):
    from olvm_backup.objectstore.memory import MemoryStore
    from services.snapshotter.journal import Journal, JournalEntry, decode_journal

    store = MemoryStore()
    journal = Journal(store, JournalEntry("b1", "vm1", "r1"))
    c, _ = commands(tmp_path, {"phase": "before", "sh": "true"})
    c.journal = journal
    await c.before()
    assert decode_journal(await store.get(journal.key), journal.key).commands == ["before"]
    await c.after()  # no after command: journaled all the same, so a janitor knows nothing is held
    assert decode_journal(await store.get(journal.key), journal.key).commands == ["before", "after"]
