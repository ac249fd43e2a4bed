"""S3 Object Lock (issue 25): a restore point's objects are written with a retention, and neither the product nor
its credentials delete them before it. The rule itself, the in-memory twin and moto (which keeps versions and
enforces retention as S3 does) share the store-level tests; what goes past the product's interface (a delete by
version id, delete markers, the governance bypass) is moto's alone. The embedded store has no Object Lock."""
from __future__ import annotations

import dataclasses
import os
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from olvm_backup.config import S3Settings, load_settings
from olvm_backup.errors import ConfigError, ObjectLocked, ObjectNotFound
from olvm_backup.objectstore import open_store
from olvm_backup.objectstore.locking import Retention, retention_for
from olvm_backup.objectstore.memory import MemoryStore
from olvm_backup.secret import Secret
from olvm_backup.stack import components
from olvm_backup.stack.processes import free_port

MIB = 1024 * 1024
COMPLIANCE = {"object_lock_days": 30, "object_lock_mode": "COMPLIANCE"}
NOW = datetime(2026, 6, 1, 12, 0, 30, 123456, tzinfo=timezone.utc)


# --- the rule -------------------------------------------------------------------------------------------------------

def test_a_restore_points_objects_are_locked_and_nothing_else():
    settings = S3Settings(object_lock_days=30, object_lock_mode="compliance")
    expected = Retention("COMPLIANCE", datetime(2026, 7, 1, 12, 0, 30, tzinfo=timezone.utc))
    for key in ("packs/ab/0123ab", "index/0123ab", "backups/vm1/b1/manifest", "backups/vm1/b1/vm.ovf"):
        assert retention_for(key, settings, NOW) == expected, key
    for key in ("jobs/b1.json", "config", "keys/k1", "legacy", "policies/daily", "packsx/ab/1", "backups"):
        assert retention_for(key, settings, NOW) is None, key
    assert retention_for("backups/vm1/b1/manifest", S3Settings(), NOW) is None  # off by default
    local = NOW.astimezone(timezone(timedelta(hours=2)))  # whatever the caller's zone, the date is UTC
    assert retention_for("index/x", settings, local) == expected


def test_a_lock_says_until_when_and_how_and_what_it_was_once_ended():
    lock = Retention("GOVERNANCE", datetime(2026, 12, 30, 14, 3, 59, tzinfo=timezone.utc))
    assert lock.holds(NOW) and lock.describe(NOW) == "locked until 2026-12-30 14:03 UTC (governance)"
    later = datetime(2027, 1, 1, tzinfo=timezone.utc)
    assert not lock.holds(later)
    assert lock.describe(later) == "not locked (its retention ended 2026-12-30 14:03 UTC (governance))"


def test_the_lock_settings_are_checked_as_they_load():
    loaded = load_settings(environ={"OLVM_OBJECT_LOCK_DAYS": "90", "OLVM_OBJECT_LOCK_MODE": "compliance"})
    assert (loaded.s3.object_lock_days, loaded.s3.object_lock_mode) == (90, "compliance")
    with pytest.raises(ConfigError, match="OLVM_OBJECT_LOCK_MODE: must be one of GOVERNANCE, COMPLIANCE"):
        load_settings(environ={"OLVM_OBJECT_LOCK_MODE": "forever"})
    with pytest.raises(ConfigError, match="OLVM_OBJECT_LOCK_DAYS: must be at least 0"):
        load_settings(environ={"OLVM_OBJECT_LOCK_DAYS": "-1"})


# --- both stores ----------------------------------------------------------------------------------------------------

@pytest.fixture(params=["memory", pytest.param("moto", marks=pytest.mark.processes)])
async def locked_store(request):
    if request.param == "memory":
        yield MemoryStore(settings=S3Settings(**COMPLIANCE))
        return
    # A bucket the store creates (OLVM_S3_CREATE_BUCKET): with Object Lock, since locking is on.
    settings = dataclasses.replace(request.getfixturevalue("s3_settings"), **COMPLIANCE)
    async with open_store(settings) as store:
        yield store


def assert_locked_for_30_days(lock: Retention | None, mode: str = "COMPLIANCE") -> None:
    assert lock is not None and lock.mode == mode
    now = datetime.now(timezone.utc)
    assert now + timedelta(days=30, minutes=-5) < lock.until <= now + timedelta(days=30), lock


async def test_the_product_cannot_delete_a_locked_manifest_and_says_why(locked_store):
    store = locked_store
    for key in ("backups/vm1/b1/manifest", "index/0123ab", "packs/ab/0123ab"):
        await store.put(key, key.encode())
        info = await store.head(key)
        assert info.size == len(key)
        assert_locked_for_30_days(info.lock)
    with pytest.raises(ObjectLocked, match=r"backups/vm1/b1/manifest is locked until 20\d\d-\d\d-\d\d \d\d:\d\d UTC "
                                           r"\(compliance\): it cannot be deleted before then"):
        await store.delete("backups/vm1/b1/manifest")
    assert await store.get("backups/vm1/b1/manifest") == b"backups/vm1/b1/manifest"
    assert (await store.head("backups/vm1/b1/manifest")).lock is not None


async def test_journals_and_the_repository_identity_stay_deletable(locked_store):
    store = locked_store
    for key in ("jobs/b1.json", "config", "keys/k1"):
        await store.put(key, b"{}")
        assert (await store.head(key)).lock is None, key
        await store.delete(key)
        assert await store.head(key) is None, key


async def test_a_multipart_pack_carries_the_retention(locked_store):
    store = locked_store
    data = os.urandom(11 * MIB)
    async with await store.multipart("packs/cd/0123cd", part_size=5 * MIB) as upload:
        await upload.write(data)
    assert_locked_for_30_days((await store.head("packs/cd/0123cd")).lock)
    with pytest.raises(ObjectLocked):
        await store.delete("packs/cd/0123cd")
    assert await store.get("packs/cd/0123cd", 5 * MIB, 10) == data[5 * MIB:5 * MIB + 10]


async def test_unlocked_objects_carry_no_lock():
    store = MemoryStore()
    await store.put("backups/vm1/b1/manifest", b"m")
    assert (await store.head("backups/vm1/b1/manifest")).lock is None
    await store.delete("backups/vm1/b1/manifest")
    assert await store.head("backups/vm1/b1/manifest") is None


async def test_a_lock_that_has_ended_no_longer_stops_a_delete():
    clock = [NOW]
    store = MemoryStore(settings=S3Settings(**COMPLIANCE), clock=lambda: clock[0])
    await store.put("backups/vm1/b1/manifest", b"m")
    with pytest.raises(ObjectLocked):
        await store.delete("backups/vm1/b1/manifest")
    clock[0] = NOW + timedelta(days=30, seconds=1)
    await store.delete("backups/vm1/b1/manifest")
    assert await store.head("backups/vm1/b1/manifest") is None


# --- moto: past the product's interface -----------------------------------------------------------------------------

def same_credentials(settings: S3Settings):
    """A plain S3 client holding the product's own keys: what someone who stole them would use."""
    return boto3.client("s3", endpoint_url=settings.endpoint_url, aws_access_key_id=settings.access_key.reveal(),
                        aws_secret_access_key=settings.secret_key.reveal(), region_name=settings.region,
                        config=Config(s3={"addressing_style": "path"}))


async def test_the_products_credentials_cannot_delete_a_locked_version_and_a_delete_marker_hides_nothing(
        s3_settings):
    settings = dataclasses.replace(s3_settings, **COMPLIANCE)
    key = "backups/vm1/b1/manifest"
    async with open_store(settings) as store:
        await store.put(key, b"the manifest")
        s3 = same_credentials(settings)
        version = s3.head_object(Bucket=settings.bucket, Key=key)["VersionId"]
        with pytest.raises(ClientError) as refused:
            s3.delete_object(Bucket=settings.bucket, Key=key, VersionId=version)
        assert refused.value.response["Error"]["Code"] == "AccessDenied"
        with pytest.raises(ClientError) as refused:  # nor does the governance bypass open a compliance lock
            s3.delete_object(Bucket=settings.bucket, Key=key, VersionId=version, BypassGovernanceRetention=True)
        assert refused.value.response["Error"]["Code"] == "AccessDenied"
        assert await store.get(key) == b"the manifest"

        # A DELETE without a version id "succeeds": a delete marker hides the object, its locked version stays.
        marker = s3.delete_object(Bucket=settings.bucket, Key=key)
        assert marker["DeleteMarker"]
        assert await store.head(key) is None
        with pytest.raises(ObjectNotFound):
            await store.get(key)
        kept = s3.get_object(Bucket=settings.bucket, Key=key, VersionId=version)
        assert kept["Body"].read() == b"the manifest" and kept["ObjectLockMode"] == "COMPLIANCE"
        # The recovery (README): delete the marker, by its version id; the object is back.
        s3.delete_object(Bucket=settings.bucket, Key=key, VersionId=marker["VersionId"])
        assert await store.get(key) == b"the manifest"
        assert (await store.head(key)).lock is not None


async def test_governance_refuses_the_product_but_not_a_user_who_bypasses_it(s3_settings):
    settings = dataclasses.replace(s3_settings, object_lock_days=30, object_lock_mode="GOVERNANCE")
    key = "backups/vm1/b1/manifest"
    async with open_store(settings) as store:
        await store.put(key, b"m")
        assert_locked_for_30_days((await store.head(key)).lock, "GOVERNANCE")
        with pytest.raises(ObjectLocked, match=r"\(governance\)"):
            await store.delete(key)
        s3 = same_credentials(settings)
        version = s3.head_object(Bucket=settings.bucket, Key=key)["VersionId"]
        with pytest.raises(ClientError, match="AccessDenied"):
            s3.delete_object(Bucket=settings.bucket, Key=key, VersionId=version)
        # moto grants every permission: on S3 this takes s3:BypassGovernanceRetention, which the product's
        # credentials should not have.
        s3.delete_object(Bucket=settings.bucket, Key=key, VersionId=version, BypassGovernanceRetention=True)
        assert await store.head(key) is None


async def test_locking_on_a_bucket_without_object_lock_stops_at_start(s3_settings):
    async with open_store(s3_settings):
        pass  # the bucket, created without Object Lock (locking off)
    locked = dataclasses.replace(s3_settings, **COMPLIANCE)
    with pytest.raises(ConfigError, match=f"OLVM_OBJECT_LOCK_DAYS is 30 but bucket {s3_settings.bucket} has no S3 "
                                          r"Object Lock \(ObjectLockConfigurationNotFoundError\)"):
        async with open_store(locked):
            pass


@pytest.mark.processes
async def test_the_embedded_store_has_no_object_lock_so_locking_stops_at_start(tmp_path, s3_settings):
    keys = {"access_key": Secret("olvm-embedded"), "secret_key": Secret("embedded-secret")}
    port = free_port()
    with components.object_store("127.0.0.1", port, tmp_path / "objects", tmp_path / "object-store.log", **keys):
        settings = dataclasses.replace(s3_settings, endpoint_url=f"http://127.0.0.1:{port}", **keys, **COMPLIANCE)
        # It creates the bucket, takes the flag, and answers that Object Lock is not enabled.
        with pytest.raises(ConfigError, match="has no S3 Object Lock .*The embedded store has no Object Lock"):
            async with open_store(settings):
                pass
