"""A request delivered twice produces one backup (issue 19): the same BackupRequest published twice on
backup.requests runs once; the second delivery ends with one `cancelled` event naming the backup the request ran
as, never a second `completed`, and the catalog holds one restore point."""
from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from olvm_backup.kafka import Bus
from schemas import BackupRequest
from schemas.topics import BACKUP_REQUESTS

from .conftest import module_sim, one_small_vm

VM = "tiny1"
INVENTORY = one_small_vm(VM, status="up")
FINAL = ("completed", "failed", "cancelled")


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """This module's own simulator, with one small VM."""
    yield from module_sim(tmp_path_factory, INVENTORY)


def test_a_request_delivered_twice_produces_one_backup(pipeline):
    request = BackupRequest(request_id=str(uuid.uuid4()), vm=VM, requested_by="test: delivered twice",
                            requested_at=time.time())

    async def publish_twice() -> None:
        async with Bus(pipeline.settings.kafka, client_id="test-duplicates") as bus:
            for _ in range(2):
                await bus.publish(BACKUP_REQUESTS, request, key=VM)
    asyncio.run(publish_twice())

    deadline = time.monotonic() + 240
    while True:
        events = pipeline.backup_events().get(request.request_id, [])
        finals = [e for e in events if e.kind in FINAL]
        if len(finals) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert [e.kind for e in finals] == ["completed", "cancelled"], [(e.kind, e.message) for e in events]
    completed, duplicate = finals
    assert [e.kind for e in events].count("accepted") == 1
    assert duplicate.backup_id is None
    assert duplicate.detail == {"duplicate_of": completed.backup_id, "state": "completed"}
    assert f"already ran as backup {completed.backup_id}, which completed" in duplicate.message

    r = pipeline.cli("backups", "--json")
    assert r.returncode == 0, r.stderr
    assert [p["backup_id"] for p in json.loads(r.stdout)] == [completed.backup_id]
