"""The repository's identity in the bucket: init, opening with one key or another, key changes that never lose
access, and the restore points written before encryption that keep reading."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging

import pytest
from blake3 import blake3

from olvm_backup.config import RepositorySettings
from olvm_backup.crypto.keys import KEY_FILE, PASSPHRASE, SlotError, WrongKey
from olvm_backup.crypto.sealing import PLAIN, Tampered
from olvm_backup.objectstore import open_store
from olvm_backup.objectstore.memory import MemoryStore
from olvm_backup.repository import keyring
from olvm_backup.repository.keyring import (
    KeySecretError, RepositoryConfigError, RepositoryExists, RepositoryNotInitialised, SlotRefused, add_slot,
    KEYS_PREFIX, change_passphrase, init_repository, list_slots, open_repository, remove_slot,
)
from olvm_backup.secret import Secret

FAST = {"n": 2 ** 12}  # tests only: the product's default is keys.SCRYPT_N
FIRST = "first passphrase, long enough"
SECOND = "second passphrase, long enough"


def run(coro):
    return asyncio.run(coro)


def with_password(text: str) -> RepositorySettings:
    return RepositorySettings(password=Secret(text))


async def _objects(store: MemoryStore) -> dict[str, bytes]:
    return {info.key: await store.get(info.key) async for info in store.list("")}


async def _encrypted(store: MemoryStore, passphrase: str = FIRST):
    return await init_repository(store, with_password(passphrase), label="first", **FAST)


def test_init_writes_config_and_a_slot_and_opens_with_its_passphrase_only():
    async def scenario():
        store = MemoryStore()
        made = await _encrypted(store)
        config = json.loads(await store.get("config"))
        assert config["v"] == [keyring.CONFIG_MAJOR, keyring.CONFIG_MINOR]
        assert config["encryption"] == "aes-256-gcm" and config["chunk_hash"] == "blake3-keyed"
        assert config["repo_id"] == made.key.repo_id
        [slot] = await list_slots(store)
        assert slot["kind"] == PASSPHRASE and slot["label"] == "first"
        opened = await open_repository(store, with_password(FIRST))
        assert opened.key == made.key and opened.encrypted
        with pytest.raises(WrongKey, match=r"^the passphrase \(or key file\) opens no key of this repository"):
            await open_repository(store, with_password(FIRST + "x"))
        with pytest.raises(KeySecretError, match="set OLVM_REPOSITORY_PASSWORD_FILE, OLVM_REPOSITORY_PASSWORD or "
                                                 "OLVM_REPOSITORY_KEY_FILE"):
            await open_repository(store, RepositorySettings())
        with pytest.raises(RepositoryExists, match="initialised here already"):
            await _encrypted(store)
        assert FIRST.encode() not in b"".join((await _objects(store)).values())
    run(scenario())


def test_two_keys_open_the_same_repository_and_removing_one_leaves_the_other(tmp_path):
    key_file = tmp_path / "repo.key"
    key_file.write_bytes(b"k" * 16 + bytes(range(32)))

    async def scenario():
        store = MemoryStore()
        made = await _encrypted(store)
        added = await add_slot(store, with_password(FIRST), key_file.read_bytes(), KEY_FILE, "offsite")
        by_file = RepositorySettings(key_file=str(key_file))
        assert (await open_repository(store, by_file)).key == made.key
        assert (await open_repository(store, with_password(FIRST))).key == made.key
        first = next(s["id"] for s in await list_slots(store) if s["id"] != added["id"])
        with pytest.raises(SlotRefused, match="the configured OLVM_REPOSITORY_PASSWORD opens.*--force"):
            await remove_slot(store, with_password(FIRST), first)
        await remove_slot(store, by_file, first)  # the other key removes it
        assert [s["id"] for s in await list_slots(store)] == [added["id"]]
        assert (await open_repository(store, by_file)).key == made.key
        with pytest.raises(WrongKey):
            await open_repository(store, with_password(FIRST))
        with pytest.raises(SlotRefused, match="last key: removing it would lose every backup"):
            await remove_slot(store, by_file, added["id"], force=True)
        with pytest.raises(SlotRefused, match="no such key"):
            await remove_slot(store, by_file, "0000000000000000")
    run(scenario())


def test_a_key_is_added_or_removed_only_by_someone_a_key_opens_for():
    async def scenario():
        store = MemoryStore()
        await _encrypted(store)
        with pytest.raises(WrongKey):
            await add_slot(store, with_password("not the passphrase"), SECOND.encode(), PASSPHRASE, **FAST)
        [slot] = await list_slots(store)
        with pytest.raises(WrongKey):
            await remove_slot(store, with_password("not the passphrase"), slot["id"], force=True)
        assert len(await list_slots(store)) == 1
    run(scenario())


def test_passwd_replaces_the_slot_and_the_old_passphrase_no_longer_opens():
    async def scenario():
        store = MemoryStore()
        made = await _encrypted(store)
        [old] = await list_slots(store)
        new = await change_passphrase(store, with_password(FIRST), SECOND.encode(), **FAST)
        assert [s["id"] for s in await list_slots(store)] == [new["id"]] and new["label"] == "first"
        assert (await open_repository(store, with_password(SECOND))).key == made.key
        with pytest.raises(WrongKey):
            await open_repository(store, with_password(FIRST))
        assert old["id"] != new["id"]
    run(scenario())


def test_passwd_writes_the_new_slot_before_deleting_the_old():
    order = []

    async def before(operation, key, part):
        if operation in ("put_object", "delete_object") and key.startswith("keys/"):
            order.append(operation)

    async def scenario():
        store = MemoryStore(before=before)
        await _encrypted(store)
        order.clear()
        await change_passphrase(store, with_password(FIRST), SECOND.encode(), **FAST)
    run(scenario())
    assert order == ["put_object", "delete_object"]


def test_config_and_slots_of_another_major_are_refused_naming_them():
    async def scenario():
        store = MemoryStore()
        await _encrypted(store)
        [slot] = await list_slots(store)
        slot["v"] = [2, 0]
        await store.put(f"keys/{slot['id']}", json.dumps(slot).encode())
        with pytest.raises(SlotError, match=rf"key slot {slot['id']}: format \[2, 0\] is not readable"):
            await open_repository(store, with_password(FIRST))
        config = json.loads(await store.get("config"))
        config["v"] = [3, 1]
        await store.put("config", json.dumps(config).encode())
        with pytest.raises(RepositoryConfigError, match=r"repository config: format \[3, 1\] is not readable by this "
                                                        r"build \(major 1\)"):
            await open_repository(store, with_password(FIRST))
    run(scenario())


def test_an_empty_bucket_is_not_a_repository_and_an_old_one_opens_unencrypted(caplog):
    async def scenario():
        store = MemoryStore()
        with pytest.raises(RepositoryNotInitialised, match="run `olvm-backup init`"):
            await open_repository(store, RepositorySettings())
        await store.put("backups/vm/b1/manifest", b"plain manifest")
        with caplog.at_level(logging.WARNING):
            assert await open_repository(store, RepositorySettings()) is PLAIN
        assert "not encrypted: run olvm-backup init to encrypt new backups" in caplog.text
    run(scenario())


def test_init_over_older_restore_points_keeps_them_readable_and_nothing_else():
    async def scenario():
        store = MemoryStore()
        old = {"backups/vm/b1/manifest": b"manifest bytes", "backups/vm/b1/vm.ovf": b"<ovf/>",
               "index/p1": b"index bytes"}
        for key, data in old.items():
            await store.put(key, data)
        await _encrypted(store)
        legacy_blob = await store.get("legacy")
        assert b"manifest bytes" not in legacy_blob and b"backups/vm/b1" not in legacy_blob  # sealed
        sealer = await open_repository(store, with_password(FIRST))
        assert sealer.legacy == {k: blake3(v).hexdigest() for k, v in old.items()}
        for key, data in old.items():
            assert sealer.open(key, await store.get(key)) == data
        await store.put("backups/vm/b2/manifest", b"planted later")
        with pytest.raises(Tampered, match="backups/vm/b2/manifest: not sealed"):
            sealer.open("backups/vm/b2/manifest", await store.get("backups/vm/b2/manifest"))
        with pytest.raises(Tampered, match="backups/vm/b1/manifest"):
            sealer.open("backups/vm/b1/manifest", b"manifest bytes, edited")
    run(scenario())


def test_an_interrupted_init_opens_nothing_and_init_completes_it():
    async def scenario():
        store = MemoryStore()
        await store.put("backups/vm/b1/manifest", b"old")
        made = await _encrypted(store)
        await store.delete("config")  # as if init stopped before its last write
        with pytest.raises(RepositoryNotInitialised, match="key slots but no `config`"):
            await open_repository(store, with_password(FIRST))
        with pytest.raises(RepositoryExists, match="holds key slots"):
            await init_repository(store, RepositorySettings(), encrypt=False)
        completed = await _encrypted(store)
        assert completed.key == made.key and len(await list_slots(store)) == 1
        assert (await open_repository(store, with_password(FIRST))).legacy == made.legacy
    run(scenario())


def test_an_unencrypted_repository_refuses_a_configured_passphrase():
    async def scenario():
        store = MemoryStore()
        with pytest.raises(KeySecretError, match="--no-encryption, yet a passphrase"):
            await init_repository(store, with_password(FIRST), encrypt=False)
        assert await init_repository(store, RepositorySettings(), encrypt=False) is PLAIN
        assert json.loads(await store.get("config"))["encryption"] == "none"
        assert await open_repository(store, RepositorySettings()) is PLAIN
        with pytest.raises(KeySecretError, match="is not encrypted, yet a passphrase or key file is configured"):
            await open_repository(store, with_password(FIRST))
    run(scenario())


def test_encrypting_needs_a_secret_and_weak_ones_are_refused(tmp_path):
    short = tmp_path / "short.key"
    short.write_bytes(b"x" * 8)

    async def scenario():
        store = MemoryStore()
        with pytest.raises(KeySecretError, match="an encrypted repository needs a passphrase or key file"):
            await init_repository(store, RepositorySettings())
        with pytest.raises(SlotError, match="fewer than 8 characters"):
            await init_repository(store, with_password("short"), **FAST)
        with pytest.raises(KeySecretError, match=r"OLVM_REPOSITORY_KEY_FILE: .*short.key holds 8 bytes"):
            await init_repository(store, RepositorySettings(key_file=str(short)))
        assert await _objects(store) == {}
    run(scenario())


def test_a_password_file_gives_its_first_line(tmp_path):
    path = tmp_path / "pw"
    path.write_text(FIRST + "\nignored second line\n")

    async def scenario():
        store = MemoryStore()
        made = await init_repository(store, RepositorySettings(password_file=str(path)), **FAST)
        assert (await open_repository(store, with_password(FIRST))).key == made.key
        with pytest.raises(KeySecretError, match="OLVM_REPOSITORY_PASSWORD_FILE: cannot read .*missing"):
            await open_repository(store, RepositorySettings(password_file=str(tmp_path / "missing")))
    run(scenario())


def test_against_s3_two_keys_open_and_the_passphrase_is_nowhere_in_the_bucket(s3_settings, tmp_path):
    key_file = tmp_path / "k"
    key_file.write_bytes(bytes(range(48)))

    async def scenario():
        async with open_store(s3_settings) as store:
            made = await init_repository(store, with_password(FIRST), **FAST)
            await add_slot(store, with_password(FIRST), key_file.read_bytes(), KEY_FILE)
            assert (await open_repository(store, RepositorySettings(key_file=str(key_file)))).key == made.key
            everything = b"".join([await store.get(i.key) async for i in store.list("")])
            assert FIRST.encode() not in everything and key_file.read_bytes() not in everything
            assert made.key.data_key not in everything
    run(scenario())


def test_a_removed_key_slot_leaves_no_older_version_in_a_locked_bucket(s3_settings):
    """An Object Lock bucket is versioned: a plain delete would keep the removed slot as a noncurrent version, and
    with it the old passphrase's way to the master key."""
    settings = dataclasses.replace(s3_settings, object_lock_days=30, object_lock_mode="GOVERNANCE")

    async def scenario():
        async with open_store(settings) as store:
            await init_repository(store, with_password(FIRST), **FAST)
            [first] = await list_slots(store)
            await add_slot(store, with_password(FIRST), SECOND.encode(), PASSPHRASE, **FAST)
            await remove_slot(store, with_password(SECOND), first["id"])
            versions = await asyncio.to_thread(store._blocking.list_object_versions, Bucket=store.bucket,
                                               Prefix=KEYS_PREFIX + first["id"])
            assert versions.get("Versions", []) == [] and versions.get("DeleteMarkers", []) == []
            with pytest.raises(WrongKey):
                await open_repository(store, with_password(FIRST))
    run(scenario())
