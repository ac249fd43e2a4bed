"""The auditor against the real broker and moto: what is published on the audited topics is in the bucket, sealed,
and `olvm-backup history` reads it back; after a "restart" (a broker that lost its topics: a fresh topic prefix,
offsets from 0, the same records published again) every record is still listed once, newest first."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import time

import pytest

from olvm_backup.audit.reading import read_trail
from olvm_backup.cli.main import main as cli
from olvm_backup.config import KafkaSettings, RepositorySettings, Settings, to_environ
from olvm_backup.kafka import Bus, ensure_topics
from olvm_backup.objectstore import open_store
from olvm_backup.repository import keyring
from olvm_backup.repository.sealedstore import open_sealed
from olvm_backup.secret import Secret
from schemas import BackupEvent, BackupRequest, PolicyEvent, RestoreEvent, RestoreRequest
from schemas.topics import BACKUP_EVENTS, BACKUP_REQUESTS, POLICY_EVENTS, RESTORE_EVENTS, RESTORE_REQUESTS
from services.auditor.main import main as auditor
from tests.cli_env import olvm_environ, root_logging_kept

HOUR_AGO = time.time() - 3600


@pytest.fixture(autouse=True)
def _logging_restored():
    with root_logging_kept():
        yield


@pytest.fixture
def repo(settings, monkeypatch) -> Settings:
    s = dataclasses.replace(settings, repository=RepositorySettings(password=Secret("audit test passphrase")))

    async def init() -> None:
        async with open_store(s.s3) as store:
            await keyring.init_repository(store, s.repository, n=2 ** 12)
    asyncio.run(init())
    olvm_environ(monkeypatch, to_environ(s))
    return s


def _records(request_id: str, at: float):
    return [
        (POLICY_EVENTS, "gold", PolicyEvent(policy="gold", action="created", actor="alice@admin", at=at)),
        (BACKUP_REQUESTS, "app1", BackupRequest(request_id=request_id, vm="app1", requested_at=at + 1,
                                                policy="gold", requested_by="policy gold: schedule nightly")),
        (BACKUP_EVENTS, request_id, BackupEvent(request_id=request_id, backup_id=f"b-{request_id}", vm="app1",
                                                kind="accepted", at=at + 2)),
        (BACKUP_EVENTS, request_id, BackupEvent(request_id=request_id, backup_id=f"b-{request_id}", vm="app1",
                                                kind="progress", at=at + 3, bytes_done=1, bytes_total=2)),
        (BACKUP_EVENTS, request_id, BackupEvent(request_id=request_id, backup_id=f"b-{request_id}", vm="app1",
                                                kind="completed", at=at + 4)),
        (RESTORE_REQUESTS, f"b-{request_id}", RestoreRequest(request_id=f"x-{request_id}",
                                                             restore_point=f"b-{request_id}", requested_at=at + 5)),
        (RESTORE_EVENTS, f"x-{request_id}", RestoreEvent(request_id=f"x-{request_id}",
                                                         restore_point=f"b-{request_id}", kind="completed",
                                                         at=at + 6)),
    ]


async def _run_auditor(settings: Settings, records, expected: int) -> None:
    """Publish `records`, run the auditor until the trail holds `expected` entries, stop it."""
    await ensure_topics(settings.kafka)
    async with Bus(settings.kafka, client_id="test-audit") as bus:
        for topic, key, record in records:
            await bus.publish(topic, record, key=key)
    task = asyncio.create_task(auditor(settings))
    try:
        async with open_sealed(settings) as (store, _):
            deadline = time.monotonic() + 60
            while len(await read_trail(store)) < expected:
                assert time.monotonic() < deadline, "the auditor did not keep the records within 60 s"
                assert not task.done(), task
                await asyncio.sleep(0.5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _history(capsys, *args: str) -> list[dict]:
    capsys.readouterr()
    assert cli(["history", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_history_is_kept_in_the_bucket_and_outlives_the_brokers_topics(repo, capsys):
    asyncio.run(_run_auditor(repo, _records("r1", HOUR_AGO), expected=6))  # 7 records, progress not kept

    async def raw_objects() -> list[bytes]:
        async with open_store(repo.s3) as store:
            return [await store.get(info.key) async for info in store.list("audit/")]
    raw = asyncio.run(raw_objects())
    assert raw and not any(b"app1" in r or b"alice" in r for r in raw)  # sealed: it names VMs and users

    shown = _history(capsys)
    assert [r["what"] for r in shown] == ["restore completed", "restore requested", "backup completed",
                                          "backup accepted", "backup requested", "policy created"]
    assert {r["by"] for r in shown if r["request_id"] == "r1"} == {"policy gold: schedule nightly"}
    assert shown[0]["vm"] == "app1" and shown[0]["outcome"] == "completed"

    # The broker restarted empty: new topics (here: another prefix), offsets from 0, a group with no commits; the
    # snapshotter publishes some of the same records again, and new ones come.
    restarted = dataclasses.replace(repo, kafka=KafkaSettings(bootstrap_servers=repo.kafka.bootstrap_servers,
                                                              topic_prefix=repo.kafka.topic_prefix + "again.",
                                                              partitions=2))
    asyncio.run(_run_auditor(restarted, _records("r1", HOUR_AGO) + _records("r2", time.time()), expected=12))
    shown = _history(capsys)
    assert [r["request_id"] for r in shown if r["what"] == "backup completed"] == ["r2", "r1"]
    assert len(shown) == 12  # each record once, though kept twice; the second policy change is another record
    assert len(_history(capsys, "--since", "30m")) == 6
    assert {r["request_id"] for r in _history(capsys, "--policy", "gold", "--vm", "app1")} == {"r1", "r2"}

    capsys.readouterr()
    assert cli(["history"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("time (UTC)") and "restore completed" in table[1] and "app1" in table[1]
    assert cli(["history", "--since", "7x"]) == 1
    assert "--since '7x': expected a number" in capsys.readouterr().err
