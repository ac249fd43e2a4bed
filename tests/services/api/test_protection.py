"""A VM's protection state as the API shows it, from the inventory, the policies, the catalog and the audit trail
(pure); and a long job's events kept bounded."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

from olvm_backup.audit.history import Row
from olvm_backup.policy.model import parse_policy
from olvm_backup.policy.selection import VmView
from schemas import BackupEvent
from services.api.jobwatch import MAX_EVENTS, JobWatch
from services.api.protection import protection


def _point(vm_id: str, backup_id: str, at: float):
    return SimpleNamespace(vm_id=vm_id, backup_id=backup_id, completed_at=at, mode="full", strategy="cbt",
                           consistency="frozen")


def test_protection_names_the_policy_the_newest_restore_point_and_the_last_result():
    vms = [VmView("id-web", "web", "Default", frozenset({"gold"})), VmView("id-db", "db", "Default", frozenset()),
           VmView("id-tmp", "tmp", "Default", frozenset())]
    gold = parse_policy({"name": "gold", "assignment": "assign", "selection": {"include": [{"tag": "gold"}]}})
    pinned = parse_policy({"name": "pinned", "vms": ["db"]})
    history = [  # newest first, as audit.history.rows gives them
        Row(300.0, "backup failed", vm="db", outcome="failed", message="engine refused", request_id="r3",
            topic="backup.events", vms={"db", "id-db"}),
        Row(200.0, "backup completed", vm="web", outcome="completed", request_id="r2", backup_id="b2",
            topic="backup.events", vms={"web", "id-web"}),
        Row(100.0, "backup completed", vm="web", outcome="completed", request_id="r1", backup_id="b1",
            topic="backup.events", vms={"web", "id-web"}),
    ]
    rows = {r["name"]: r for r in protection(vms, [gold, pinned], [_point("id-web", "b1", 100.0),
                                                                    _point("id-web", "b2", 200.0)], history)}
    assert rows["web"]["policy"] == "gold" and rows["web"]["protected"]
    assert rows["web"]["last_restore_point"]["backup_id"] == "b2"
    assert rows["web"]["last_result"]["outcome"] == "completed" and rows["web"]["last_result"]["request_id"] == "r2"
    assert rows["db"]["policy"] == "pinned" and rows["db"]["protected"]
    assert rows["db"]["last_restore_point"] is None and rows["db"]["last_result"]["outcome"] == "failed"
    assert rows["tmp"] == {**rows["tmp"], "policy": None, "protected": False, "last_restore_point": None,
                           "last_result": None}


def test_a_long_jobs_progress_is_kept_bounded_and_its_end_kept():
    watch = JobWatch(kafka=None)

    async def feed() -> None:
        for i in range(MAX_EVENTS + 500):
            await watch._seen("backup", BackupEvent(request_id="r", vm="web", kind="progress", at=float(i),
                                                    bytes_total=10_000, bytes_done=i))
        await watch._seen("backup", BackupEvent(request_id="r", vm="web", kind="completed", at=1e6))

    asyncio.run(feed())
    job = watch.job("r")
    assert len(job.events) == MAX_EVENTS + 1
    assert job.events[-2]["bytes_done"] == MAX_EVENTS + 499 and job.events[-1]["kind"] == "completed"
    assert job.ended and job.summary()["state"] == "completed"
