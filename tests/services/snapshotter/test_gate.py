"""The snapshotter's door on the in-memory twins: a request delivered twice runs one job, the second delivery is told
(a final `cancelled` naming the backup it ran as); a request another snapshotter runs now is not run beside it;
one whose owner died runs again. The job here fails at its first engine call (no engine needed), which is enough:
the marker is written at the start and with the outcome, whatever the outcome."""
from __future__ import annotations

import time
import uuid

import pytest

from olvm_backup.config import Settings
from olvm_backup.engine import EngineNotFound
from olvm_backup.errors import StoreError
from olvm_backup.objectstore.memory import MemoryStore
from olvm_backup.repository.chunkindex import ChunkIndex
from schemas import BackupRequest
from schemas.topics import BACKUP_EVENTS
from services.snapshotter import job
from services.snapshotter.gate import read_marker, run_once
from services.snapshotter.journal import JournalEntry, encode_journal
from services.snapshotter.once import RequestMarker, encode_marker, marker_key
from services.snapshotter.tracker import Tracker
from tests.twins import MemoryBus


@pytest.fixture
def jobs_run(monkeypatch) -> list[str]:
    """The VMs the job looked up: one per backup actually started. The lookup fails: no engine here."""
    looked_up = []

    async def find_vm(engine, name):
        looked_up.append(name)
        raise EngineNotFound(f"no VM named or with id {name!r}")

    monkeypatch.setattr(job, "find_vm", find_vm)
    return looked_up


def _ctx(tmp_path, store=None) -> job.Context:
    index = ChunkIndex()
    return job.Context(Settings(data_dir=tmp_path), None, store or MemoryStore(), MemoryBus(), Tracker(index), index)


def _request(request_id: str | None = None) -> BackupRequest:
    return BackupRequest(request_id=request_id or f"policy:gold/vm:app1/slot:{uuid.uuid4()}", vm="app1",
                         requested_at=time.time(), requested_by="policy gold", policy="gold")


def _kinds(ctx) -> list[str]:
    return [e.kind for e in ctx.bus.records(BACKUP_EVENTS)]


async def test_a_request_delivered_twice_runs_one_job_and_the_second_is_told(tmp_path, jobs_run):
    ctx, request = _ctx(tmp_path), _request()
    await run_once(ctx, request)
    marker = await read_marker(ctx.store, request.request_id)
    assert marker is not None and marker.state == "failed"
    await run_once(ctx, request)
    assert jobs_run == ["app1"]
    events = ctx.bus.records(BACKUP_EVENTS)
    assert [e.kind for e in events] == ["accepted", "failed", "cancelled"]
    assert events[1].backup_id == marker.backup_id
    duplicate = events[2]
    assert duplicate.request_id == request.request_id and duplicate.backup_id is None
    assert duplicate.detail == {"duplicate_of": marker.backup_id, "state": "failed"}


async def test_another_request_of_the_same_vm_runs(tmp_path, jobs_run):
    ctx = _ctx(tmp_path)
    await run_once(ctx, _request())
    await run_once(ctx, _request())
    assert jobs_run == ["app1", "app1"]
    assert _kinds(ctx) == ["accepted", "failed", "accepted", "failed"]


async def test_a_request_that_completed_elsewhere_is_not_run(tmp_path, jobs_run):
    ctx, request = _ctx(tmp_path), _request()
    await ctx.store.put(marker_key(request.request_id), encode_marker(
        RequestMarker(request.request_id, "b-done", "completed", time.time() - 86400, "other-host:1")))
    await run_once(ctx, request)
    assert jobs_run == []
    [event] = ctx.bus.records(BACKUP_EVENTS)
    assert event.kind == "cancelled" and event.detail["duplicate_of"] == "b-done"
    assert "already ran as backup b-done, which completed" in event.message


async def _running_elsewhere(ctx, request, backup_id: str, alive_ago: float) -> None:
    """`request` marked running as `backup_id` an hour ago on other-host:1, whose journal says it was alive
    `alive_ago` seconds ago."""
    await ctx.store.put(marker_key(request.request_id), encode_marker(
        RequestMarker(request.request_id, backup_id, "running", time.time() - 3600, "other-host:1")))
    await ctx.store.put(f"jobs/{backup_id}.json", encode_journal(JournalEntry(
        backup_id, "vm1", request.request_id, owner="other-host:1", alive_at=time.time() - alive_ago)))


async def test_a_request_running_on_a_live_snapshotter_is_not_run_beside_it(tmp_path, jobs_run):
    ctx, request = _ctx(tmp_path), _request()
    await _running_elsewhere(ctx, request, "b-running", alive_ago=2)
    await run_once(ctx, request)
    assert jobs_run == []
    [event] = ctx.bus.records(BACKUP_EVENTS)
    assert event.kind == "progress" and event.detail == {"duplicate_of": "b-running", "state": "running"}


async def test_a_request_whose_snapshotter_was_killed_runs_again_from_the_start(tmp_path, jobs_run):
    ctx, request = _ctx(tmp_path), _request()
    await _running_elsewhere(ctx, request, "b-killed", alive_ago=3600)
    await run_once(ctx, request)
    assert jobs_run == ["app1"]
    marker = await read_marker(ctx.store, request.request_id)
    assert marker.state == "failed" and marker.backup_id != "b-killed"


async def test_a_store_that_cannot_be_read_runs_the_request(tmp_path, jobs_run):
    store = MemoryStore()

    async def away(op, key, part):
        if op == "get_object" and key.startswith("requests/"):
            raise StoreError("the store is away")

    store.before = away
    ctx, request = _ctx(tmp_path, store), _request()
    await run_once(ctx, request)
    assert jobs_run == ["app1"] and _kinds(ctx) == ["accepted", "failed"]
