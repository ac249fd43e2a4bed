"""The audit trail survives a restart of the broker (issue 19): a backup and a restore through the pipeline, with
the auditor running; then the audited topics are deleted, as a restarted embedded stack's broker has none of them
(it keeps topics in memory only), and `olvm-backup history` still lists both, with their outcome and who asked:
history comes from the object store, not the broker."""
from __future__ import annotations

import asyncio
import json
import time

import pytest

from olvm_backup.kafka.admin import delete_topics, list_topics
from olvm_backup.audit.trail import AUDITED

from .conftest import module_sim, one_small_vm

VM = "tiny1"
INVENTORY = one_small_vm(VM, status="down")


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """This module's own simulator, with one small VM."""
    yield from module_sim(tmp_path_factory, INVENTORY)


def history(pipeline, *args: str) -> list[dict]:
    r = pipeline.cli("history", "--json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_history_lists_backups_and_restores_after_the_brokers_topics_are_gone(pipeline):
    pipeline.start("auditor", "auditor")
    r = pipeline.cli("backup", VM, "--wait")
    assert r.returncode == 0, f"backup failed:\n{r.stdout}\n{r.stderr}"
    point = r.stdout.split()[-1]
    r = pipeline.cli("restore", point, "--name", f"{VM}-restored", "--wait")
    assert r.returncode == 0, f"restore failed:\n{r.stdout}\n{r.stderr}"

    deadline = time.monotonic() + 60
    while not any(e["what"] == "restore completed" for e in history(pipeline)):
        assert time.monotonic() < deadline, "the auditor did not keep the restore within 60 s"
        time.sleep(1.0)
    pipeline.stop("auditor")

    prefix = pipeline.settings.kafka.topic_prefix
    audited = [t.full_name(prefix) for t in AUDITED]
    asyncio.run(delete_topics(pipeline.settings.kafka, audited))
    assert not set(audited) & set(asyncio.run(list_topics(pipeline.settings.kafka)))

    shown = history(pipeline)
    backup = [e for e in shown if e["topic"].startswith("backup.")]
    restore = [e for e in shown if e["topic"].startswith("restore.")]
    assert [e["what"] for e in backup] == ["backup completed", "backup stored", "backup started", "backup accepted",
                                           "backup requested"]
    assert [e["what"] for e in restore][0] == "restore completed" and restore[-1]["what"] == "restore requested"
    assert {(e["vm"], e["by"], e["outcome"]) for e in backup + restore} == {(VM, "cli", "completed")}
    assert {e["backup_id"] for e in backup + restore} == {point}
    assert [e["at"] for e in shown] == sorted((e["at"] for e in shown), reverse=True)
    assert history(pipeline, "--vm", VM, "--since", "1h") == shown
    assert history(pipeline, "--vm", "another") == []
