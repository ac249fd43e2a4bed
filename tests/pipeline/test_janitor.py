"""The janitor and a job's one final event, with the real services against the simulator: an engine outage longer
than the retry budget fails the backup, and once the engine is back the same snapshotter process closes what the
job's own cleanup could not; a failed backup leaves nothing for a restart to report again."""
from __future__ import annotations

import re
import subprocess
import sys

from services.snapshotter.main import SWEEP_EVERY
from tests.pipeline.test_cbt_backup import _wait_for_log, backup

FINAL = {"completed", "failed", "cancelled"}


def finals(pipeline, request_id: str) -> list[str]:
    return [e.kind for e in pipeline.backup_events().get(request_id, []) if e.kind in FINAL]


def request_of(cli_stderr: str) -> str:
    return re.search(r"requested: (\S+)", cli_stderr).group(1)


def test_an_engine_outage_past_the_retry_budget_is_cleaned_up_without_a_restart(pipeline, admin, engine_view):
    snapshotter = pipeline.processes["snapshotter"]
    seen = (pipeline.logs / "reader.log").read_text().count("reading disk")
    proc = subprocess.Popen([sys.executable, "-m", "olvm_backup.cli.main", "backup", "big1", "--wait"],
                            env=pipeline.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_log(pipeline.logs / "reader.log", "reading disk", after=seen + 1)
    # Mid-backup (engine backup running, transfers open, disk locked) the engine answers every call with a 500,
    # for longer than any retry budget: the job's own cleanup fails too.
    admin.fault("engine-500", count=1_000_000)
    try:
        out, err = proc.communicate(timeout=600)
    finally:
        admin.fault("engine-500", count=0)  # the engine is back
    assert proc.returncode != 0, err
    assert "FAILED" in err and "gave up after" in err, err
    assert "the snapshotter closes it as soon as the engine answers" in err, err

    # Within a sweep of the janitor, the same snapshotter process (not restarted) closes what the job left.
    assert engine_view.leftovers(settle=SWEEP_EVERY + 60) == []
    assert pipeline.processes["snapshotter"] is snapshotter and snapshotter.proc.poll() is None
    assert pipeline.journals() == []
    backup(pipeline, "big1")
    assert engine_view.leftovers() == []
    assert finals(pipeline, request_of(err)) == ["failed"]


def test_a_failed_backup_ends_with_one_final_event_whatever_restarts_follow(pipeline, admin, engine_view):
    admin.fault("transfer-fail")
    r = pipeline.cli("backup", "app1", "--wait", "--exclude", "app1_scratch")
    assert r.returncode != 0, r.stderr
    assert engine_view.leftovers() == []
    assert pipeline.journals() == [], "a backup that closed everything it opened left its journal"
    # A restart (its janitor sweeps first), then a backup that the restarted snapshotter runs to the end.
    pipeline.stop("snapshotter")
    pipeline.start("snapshotter", "snapshotter")
    backup(pipeline, "app1", "--exclude", "app1_scratch")
    assert finals(pipeline, request_of(r.stderr)) == ["failed"]
