"""`olvm-backup verify` tells a restore point's Object Lock state: its manifest's (issue 25)."""
from __future__ import annotations

from types import SimpleNamespace

from olvm_backup.cli.checks import restore_point_lock
from olvm_backup.config import S3Settings
from olvm_backup.objectstore.memory import MemoryStore
from olvm_backup.repository.catalog import manifest_key

POINT = SimpleNamespace(vm_id="vm1", backup_id="b1")  # what the lookup reads of a manifest


async def test_verify_reports_the_manifests_lock():
    store = MemoryStore(settings=S3Settings(object_lock_days=30, object_lock_mode="COMPLIANCE"))
    await store.put(manifest_key("vm1", "b1"), b"m")
    state = await restore_point_lock(store, POINT)
    assert state.startswith("locked until 20") and state.endswith(" UTC (compliance)"), state
    assert state == (await store.head(manifest_key("vm1", "b1"))).lock.describe(store.clock())


async def test_verify_reports_an_unlocked_restore_point_as_such():
    store = MemoryStore()
    await store.put(manifest_key("vm1", "b1"), b"m")
    assert await restore_point_lock(store, POINT) == "not locked"
