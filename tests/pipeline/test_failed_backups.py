"""What a failed backup says, against the simulator's engine: the step that failed, and the --no-quiesce hint only
when the engine could not freeze the guest. The snapshotter's job runs in-process (its object store and bus the
in-memory twins), so a stalled engine backup can be given a short deadline to miss."""
from __future__ import annotations

import json
import os
import time
import uuid


from olvm_backup.config import KafkaSettings, S3Settings, Settings
from olvm_backup.engine import Engine, cbt
from olvm_backup.objectstore.memory import MemoryStore
from olvm_backup.repository.chunkindex import ChunkIndex
from schemas import BackupRequest
from schemas.topics import BACKUP_EVENTS
from services.snapshotter.job import BackupJob, Context
from services.snapshotter.tracker import Tracker
from tests.twins import MemoryBus


async def failed_backup(sim, tmp_path, vm: str, settings: Settings | None = None, **request) -> str:
    """The message of the job's `failed` event: what `olvm-backup backup --wait` prints after FAILED."""
    settings = settings or Settings(data_dir=tmp_path, engine=sim.engine_settings())
    bus, index = MemoryBus(), ChunkIndex()
    async with Engine(settings.engine) as engine:
        ctx = Context(settings, engine, MemoryStore(), bus, Tracker(index), index)
        await BackupJob(ctx, BackupRequest(request_id=str(uuid.uuid4()), vm=vm, requested_at=time.time(),
                                           **request)).run()
    [failed] = [e for e in bus.records(BACKUP_EVENTS) if e.kind == "failed"]
    return failed.message


async def test_a_backup_stuck_before_ready_names_its_step_and_no_freeze(sim, admin, engine_view, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setattr(cbt, "BACKUP_READY_DEADLINE", 3.0)
    admin.fault("backup-stall")
    message = await failed_backup(sim, tmp_path, "app1", exclude_disks=["app1_scratch"])
    assert message.startswith("engine start: ") and "to become ready" in message, message
    # The backup never got as far as the freeze: nothing to say of it, nor of --no-quiesce.
    assert "--no-quiesce" not in message and "freeze" not in message, message
    assert engine_view.leftovers() == []


async def test_a_failed_freeze_says_so_and_what_to_do(sim, admin, engine_view, tmp_path):
    admin.fault("freeze-fail")
    message = await failed_backup(sim, tmp_path, "app1", exclude_disks=["app1_scratch"])
    assert message.startswith("engine start: "), message
    assert "could not freeze" in message and "--no-quiesce" in message, message
    assert engine_view.leftovers() == []


async def test_an_engine_that_stays_away_fails_the_step_it_stopped(sim, admin, engine_view, tmp_path):
    admin.fault("engine-500", count=1000)
    try:
        message = await failed_backup(sim, tmp_path, "app1")
    finally:
        admin.fault("engine-500", count=0)  # the engine answers again
    # The retries are spent: the message says so, and which step was waiting on the engine.
    assert message.startswith("prepare: find VM app1: gave up after "), message
    assert "will retry" not in message, message
    assert engine_view.leftovers() == []


async def test_a_backup_larger_than_the_embedded_stores_free_space_fails_before_reading(
        sim, broker, engine_view, tmp_path, small_disk):
    settings = Settings(data_dir=tmp_path, engine=sim.engine_settings(),
                        kafka=KafkaSettings(bootstrap_servers=broker, topic_prefix=f"f{uuid.uuid4().hex[:8]}."),
                        s3=S3Settings(endpoint_url="http://127.0.0.1:19555"))
    (tmp_path / "run").mkdir()  # the embedded store of a running stack (this process stands in for `up`)
    (tmp_path / "run" / "stack.json").write_text(json.dumps({
        "pid": os.getpid(), "s3": settings.s3.endpoint_url, "objects": str(small_disk), "processes": {}}))
    message = await failed_backup(sim, tmp_path, "app1", settings, exclude_disks=["app1_scratch"])
    assert message.startswith(f"the object store's disk is full (12.0 MiB free in {small_disk}, less than the "), \
        message
    assert engine_view.leftovers() == []
