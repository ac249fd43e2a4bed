"""Node commands as real processes: the argument list run with olvm-backup's environment over the spec's, and a
command past its timeout killed with everything it started (its process group), not only its first process."""
from __future__ import annotations

import asyncio
import os
import time

import pytest

from olvm_backup.commands import parse_spec, run_command

pytestmark = pytest.mark.processes  # real processes, if small ones


def spec(run, **kw):
    return parse_spec({"phase": "before", "run": run, **kw})


async def test_the_argument_list_runs_with_the_environment_and_its_output_is_kept():
    result = await run_command(spec(["sh", "-c", 'echo "$OLVM_VM $MODE $1"; echo oops >&2', "sh", "a b"],
                                    env={"MODE": "fast"}, stderr="warn"), {"OLVM_VM": "db1"})
    assert result.status == "warned" and result.stdout_tail == "db1 fast a b" and result.stderr_tail == "oops"
    assert result.exit_code == 0 and result.duration > 0


async def test_an_exit_code_fails_unless_ignored():
    failed = await run_command(spec(["sh", "-c", "exit 101"]), {})
    ignored = await run_command(spec(["sh", "-c", "exit 101"], ignore_exit="15,101-150"), {})
    assert (failed.status, failed.exit_code, ignored.status) == ("failed", 101, "warned")


async def test_a_missing_program_is_said():
    result = await run_command(spec(["/nonexistent/flush"]), {})
    assert result.status == "failed" and "could not run: /nonexistent/flush" in result.message


async def test_a_command_past_its_timeout_is_killed_with_its_children(tmp_path):
    pid_file = tmp_path / "child.pid"
    started = time.monotonic()
    # The child keeps the pipes open: killing the shell alone would leave it, and the runner waiting on it.
    result = await run_command(spec(["sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait"], timeout=1), {})
    took = time.monotonic() - started
    assert result.status == "failed" and "still running after its timeout of 1s: killed" in result.message
    assert took < 10, took
    child = int(pid_file.read_text())
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"the command's child {child} outlived its timeout")


async def test_the_services_settings_and_secrets_are_not_passed_on(monkeypatch):
    monkeypatch.setenv("OLVM_REPOSITORY_PASSWORD", "hunter2-repo")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2-aws")
    monkeypatch.setenv("DB_TOKEN", "hunter2-token")
    monkeypatch.setenv("LANG", "C.UTF-8")
    result = await run_command(spec(["sh", "-c", "env | grep -E '^(LANG|PATH|OLVM_|AWS_|DB_)'"]), {"OLVM_VM": "db1"})
    assert "hunter2" not in result.stdout_tail and "OLVM_VM=db1" in result.stdout_tail
    assert "LANG=C.UTF-8" in result.stdout_tail and "PATH=" in result.stdout_tail
