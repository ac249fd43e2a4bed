"""The repository's identity in the bucket: whether it is encrypted, and the key slots that open it.

  config        {"v", "repo_id", "encryption", "chunk_hash", "created_at"}, JSON in clear: what every build reads first
  keys/<id>     one key slot each (crypto/keys.py), JSON: the master key wrapped by one passphrase or key file
  legacy        sealed: the objects written before encryption was turned on (key -> BLAKE3 of their bytes), which
                an encrypted repository still reads (sealing.Sealer.legacy)

`config` is written last, so an interrupted `init` leaves slots without a config: nothing opens that as a
repository, and `init` with the same passphrase completes it. A bucket without `config` that holds restore points
predates encryption: it opens unencrypted, with a warning.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from blake3 import blake3

from ..config import RepositorySettings
from ..crypto import keys
from ..crypto.keys import KEY_FILE, PASSPHRASE, SlotError, WrongKey
from ..crypto.sealing import CHUNK_HASH, CIPHER, PLAIN, RepoKey, Sealer
from ..errors import BackupError, ConfigError, ObjectNotFound
from ..objectstore import ObjectStore
from ..secret import read_secret_file
from .chunkindex import INDEX_PREFIX

log = logging.getLogger(__name__)

CONFIG = "config"
KEYS_PREFIX = "keys/"
LEGACY = "legacy"
DATA_PREFIXES = ("backups/", INDEX_PREFIX)  # what a repository from before encryption holds to be read

# The config object's format (schemas/FORMAT.md). A reader refuses another major and reads a newer minor.
CONFIG_MAJOR = 1
CONFIG_MINOR = 0
LEGACY_MAJOR = 1

SECRET_SETTINGS = "OLVM_REPOSITORY_PASSWORD_FILE, OLVM_REPOSITORY_PASSWORD or OLVM_REPOSITORY_KEY_FILE"


class RepositoryNotInitialised(BackupError):
    template = "bucket {bucket}: {reason}"

    def __init__(self, bucket: str, reason: str = "no repository here: run `olvm-backup init`") -> None:
        super().__init__(reason, bucket=bucket)


class RepositoryExists(BackupError):
    template = "bucket {bucket}: {reason}"

    def __init__(self, bucket: str, reason: str = "a repository is initialised here already "
                 "(`olvm-backup key list` shows its keys)") -> None:
        super().__init__(reason, bucket=bucket)


class RepositoryConfigError(BackupError):
    """The `config` object is one this build cannot use."""

    template = "repository config: {reason}"


class KeySecretError(ConfigError):
    """The passphrase or key file settings do not fit the repository (none for an encrypted one, one for a plain
    one, or a file that cannot be read)."""


class SlotRefused(BackupError):
    """A change to the key slots that would lose access, or names no slot."""

    template = "key {slot}: {reason}"

    def __init__(self, slot: str, reason: str) -> None:
        super().__init__(reason, slot=slot)


@dataclass(frozen=True)
class KeySecret:
    """One configured secret: its kind (keys.PASSPHRASE or keys.KEY_FILE), its bytes, and the setting it came from."""

    kind: str
    value: bytes
    setting: str

    def __repr__(self) -> str:
        return f"KeySecret({self.kind}, from {self.setting})"


def configured_secrets(settings: RepositorySettings) -> list[KeySecret]:
    """The passphrase and key file the settings name, read; KeySecretError naming the setting when one is wrong."""
    found = []
    if settings.password and settings.password_file:
        raise KeySecretError("set OLVM_REPOSITORY_PASSWORD or OLVM_REPOSITORY_PASSWORD_FILE, not both")
    if settings.password:
        found.append(KeySecret(PASSPHRASE, keys.passphrase_bytes(settings.password.reveal()),
                               "OLVM_REPOSITORY_PASSWORD"))
    if settings.password_file:
        try:
            text = read_secret_file(settings.password_file).reveal()
        except (OSError, UnicodeDecodeError) as e:
            raise KeySecretError(f"OLVM_REPOSITORY_PASSWORD_FILE: cannot read {settings.password_file}: "
                                 f"{getattr(e, 'strerror', None) or e}") from None
        if not text:
            raise KeySecretError(f"OLVM_REPOSITORY_PASSWORD_FILE: the first line of {settings.password_file} "
                                 "is empty")
        found.append(KeySecret(PASSPHRASE, keys.passphrase_bytes(text), "OLVM_REPOSITORY_PASSWORD_FILE"))
    if settings.key_file:
        found.append(read_key_file(settings.key_file, "OLVM_REPOSITORY_KEY_FILE"))
    return found


def read_key_file(path: str, setting: str) -> KeySecret:
    try:
        with open(path, "rb") as f:
            value = f.read()
    except OSError as e:
        raise KeySecretError(f"{setting}: cannot read {path}: {e.strerror}") from None
    if len(value) < keys.KEY_FILE_MIN:
        raise KeySecretError(f"{setting}: {path} holds {len(value)} bytes; a key file holds at least "
                             f"{keys.KEY_FILE_MIN} random bytes (`olvm-backup key generate-file`)")
    return KeySecret(KEY_FILE, value, setting)


# -- the objects -----------------------------------------------------------------------------------------------
async def _get_json(store: ObjectStore, key: str) -> Any | None:
    try:
        raw = await store.get(key)
    except ObjectNotFound:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise RepositoryConfigError(f"{key} is not JSON") from None


async def read_config(store: ObjectStore) -> dict | None:
    """The `config` object, checked; None when the bucket has none."""
    config = await _get_json(store, CONFIG)
    if config is None:
        return None
    version = config.get("v") if isinstance(config, dict) else None
    if not (isinstance(version, list) and version and version[0] == CONFIG_MAJOR):
        raise RepositoryConfigError(f"format {version!r} is not readable by this build (major {CONFIG_MAJOR}); "
                                    "use the build that wrote it")
    encryption = config.get("encryption")
    if encryption not in (CIPHER, "none") or not config.get("repo_id"):
        raise RepositoryConfigError(f"encryption {encryption!r} is not one this build knows ({CIPHER} or none)")
    if config.get("chunk_hash") != (CHUNK_HASH if encryption == CIPHER else "blake3"):
        raise RepositoryConfigError(f"chunk hash {config.get('chunk_hash')!r} does not go with {encryption}")
    return config


async def list_slots(store: ObjectStore) -> list[dict]:
    """Every key slot in the bucket, oldest first; SlotError naming one this build cannot read."""
    slots = []
    async for info in store.list(KEYS_PREFIX):
        slot = keys.check_slot(await _get_json(store, info.key))
        if info.key != KEYS_PREFIX + slot["id"]:
            raise SlotError(slot["id"], f"found as {info.key}: a slot is kept under its own id")
        slots.append(slot)
    return sorted(slots, key=lambda s: (s.get("created_at", 0), s["id"]))


async def _put_slot(store: ObjectStore, slot: dict) -> None:
    await store.put(KEYS_PREFIX + slot["id"], json.dumps(slot, indent=1).encode())


async def _holds_data(store: ObjectStore) -> bool:
    for prefix in DATA_PREFIXES:
        async for _ in store.list(prefix):
            return True
    return False


async def _legacy_map(store: ObjectStore) -> dict[str, str]:
    """Every object a repository from before encryption reads: key -> BLAKE3 of its bytes."""
    found = {}
    for prefix in DATA_PREFIXES:
        async for info in store.list(prefix):
            found[info.key] = blake3(await store.get(info.key)).hexdigest()
    return found


async def _read_legacy(store: ObjectStore, key: RepoKey) -> dict[str, str] | None:
    try:
        blob = await store.get(LEGACY)
    except ObjectNotFound:
        return None
    doc = json.loads(key.open_object(LEGACY, blob))  # Tampered names it when it was altered or swapped
    if doc.get("v", [None])[0] != LEGACY_MAJOR:
        raise RepositoryConfigError(f"{LEGACY}: format {doc.get('v')!r} is not readable by this build "
                                    f"(major {LEGACY_MAJOR})")
    return doc["objects"]


# -- opening ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Unlocked:
    key: RepoKey
    slot_id: str  # the slot that opened
    secret: KeySecret  # the configured secret that opened it


def _unlock(slots: list[dict], secrets: list[KeySecret], repo_id: str | None) -> Unlocked:
    """The first slot (of `repo_id`, when given) a configured secret opens; WrongKey when none does."""
    if not secrets:
        raise KeySecretError(f"the repository is encrypted: set {SECRET_SETTINGS} to a passphrase or key file "
                             "that opens one of its keys")
    for secret in secrets:
        for slot in slots:
            if slot["kind"] == secret.kind and (repo_id is None or slot["repo_id"] == repo_id):
                try:
                    return Unlocked(keys.unwrap(slot, secret.value), slot["id"], secret)
                except WrongKey:
                    continue
    tried = " and ".join(s.setting for s in secrets)
    raise WrongKey(f"the passphrase (or key file) opens no key of this repository (tried {tried})")


async def unlock(store: ObjectStore, settings: RepositorySettings) -> tuple[dict, Unlocked]:
    """The config and the master key of an encrypted repository, opened with the configured secret(s)."""
    config = await read_config(store)
    if config is None:
        raise RepositoryNotInitialised(store.bucket)
    if config["encryption"] == "none":
        raise RepositoryConfigError("the repository is not encrypted: it has no keys")
    return config, _unlock(await list_slots(store), configured_secrets(settings), config["repo_id"])


async def open_repository(store: ObjectStore, settings: RepositorySettings) -> Sealer:
    """How this repository's objects are sealed and opened (sealing.Sealer)."""
    config = await read_config(store)
    if config is None:
        if await _any(store, KEYS_PREFIX):
            raise RepositoryNotInitialised(store.bucket, "key slots but no `config`: an `olvm-backup init` was "
                                           "interrupted (run it again with the same passphrase or key file to "
                                           "complete it), or `config` was deleted (the same)")
        if await _holds_data(store):
            log.warning("the repository in bucket %s is not encrypted: run olvm-backup init to encrypt new backups",
                        store.bucket)
            return PLAIN
        raise RepositoryNotInitialised(store.bucket)
    if config["encryption"] == "none":
        if settings.password or settings.password_file or settings.key_file:
            raise KeySecretError(f"the repository in bucket {store.bucket} is not encrypted, yet a passphrase or key "
                                 f"file is configured ({SECRET_SETTINGS}): is this the bucket you meant? Unset them "
                                 "to use it unencrypted")
        return PLAIN
    opened = _unlock(await list_slots(store), configured_secrets(settings), config["repo_id"])
    return Sealer(opened.key, await _read_legacy(store, opened.key) or {})


async def _any(store: ObjectStore, prefix: str) -> bool:
    async for _ in store.list(prefix):
        return True
    return False


# -- init ------------------------------------------------------------------------------------------------------
async def init_repository(store: ObjectStore, settings: RepositorySettings, *, encrypt: bool = True,
                          label: str = "", **kdf: int) -> Sealer:
    """Make the bucket a repository: encrypted (a first key slot from the configured passphrase or key file, and
    the objects already there recorded as `legacy`) or not. Slot and legacy are written first, `config` last.
    `kdf`: scrypt parameters (n, r, p), lower than the default in tests only."""
    if await read_config(store) is not None:
        raise RepositoryExists(store.bucket)
    leftover = await list_slots(store)
    if not encrypt:
        if leftover:
            raise RepositoryExists(store.bucket, "it holds key slots (an encrypted repository whose `config` is "
                                   "missing): run `olvm-backup init` with the passphrase or key file that opens one")
        if settings.password or settings.password_file or settings.key_file:
            raise KeySecretError(f"--no-encryption, yet a passphrase or key file is configured ({SECRET_SETTINGS})")
        await _put_config(store, {"repo_id": RepoKey.generate().repo_id, "encryption": "none", "chunk_hash": "blake3"})
        return PLAIN
    secrets = configured_secrets(settings)
    if not secrets:
        raise KeySecretError(f"an encrypted repository needs a passphrase or key file: set {SECRET_SETTINGS} "
                             "(or `olvm-backup init --no-encryption`)")
    if leftover:  # an init that stopped before `config`: complete it with the key its slot holds
        opened = _unlock(leftover, secrets, None)
        key = opened.key
        legacy = await _read_legacy(store, key)
        log.warning("completing the repository whose key slot %s an interrupted init left", opened.slot_id)
    else:
        key, legacy = RepoKey.generate(), None
        first = secrets[0]
        await _put_slot(store, keys.make_slot(key, first.value, first.kind, label, **kdf))
    if legacy is None:
        legacy = await _legacy_map(store)
        if legacy:
            doc = {"v": [LEGACY_MAJOR, 0], "objects": legacy}
            await store.put(LEGACY, key.seal_object(LEGACY, json.dumps(doc).encode()))
    await _put_config(store, {"repo_id": key.repo_id, "encryption": CIPHER, "chunk_hash": CHUNK_HASH})
    return Sealer(key, legacy)


async def _put_config(store: ObjectStore, fields: dict) -> None:
    config = {"v": [CONFIG_MAJOR, CONFIG_MINOR], **fields, "created_at": time.time()}
    await store.put(CONFIG, json.dumps(config, indent=1).encode())


# -- key management --------------------------------------------------------------------------------------------
async def add_slot(store: ObjectStore, settings: RepositorySettings, new_secret: bytes, kind: str,
                   label: str = "", **kdf: int) -> dict:
    """A new slot wrapping the same master key under `new_secret`; opening needs a configured secret first."""
    _, opened = await unlock(store, settings)
    slot = keys.make_slot(opened.key, new_secret, kind, label, **kdf)
    await _put_slot(store, slot)
    return slot


async def opened_slots(store: ObjectStore, settings: RepositorySettings) -> set[str]:
    """The ids of the slots the configured secret(s) open (none when no secret is configured)."""
    config = await read_config(store)
    secrets = configured_secrets(settings)
    if config is None or config["encryption"] == "none" or not secrets:
        return set()
    found = set()
    for slot in await list_slots(store):
        for secret in secrets:
            if slot["kind"] == secret.kind and slot["repo_id"] == config["repo_id"]:
                try:
                    keys.unwrap(slot, secret.value)
                except WrongKey:
                    continue
                found.add(slot["id"])
    return found


async def remove_slot(store: ObjectStore, settings: RepositorySettings, slot_id: str, *,
                      force: bool = False) -> None:
    """Remove one slot. Only someone a slot opens for may (the configured secret must open the repository); never
    the last slot (it would lose every backup); the slot the configured secret opens only with `force` (the
    configuration would no longer open the repository)."""
    config, opened = await unlock(store, settings)
    slots = [s for s in await list_slots(store) if s["repo_id"] == config["repo_id"]]
    if slot_id not in {s["id"] for s in slots}:
        raise SlotRefused(slot_id, "no such key in this repository (`olvm-backup key list`)")
    if len(slots) == 1:
        raise SlotRefused(slot_id, "it is the repository's last key: removing it would lose every backup")
    if slot_id in await opened_slots(store, settings) and not force:
        raise SlotRefused(slot_id, f"it is the key the configured {opened.secret.setting} opens: after removing it "
                          "this configuration opens nothing; configure another key first, or --force")
    await store.erase(KEYS_PREFIX + slot_id)  # no older version of it may keep opening the key


async def change_passphrase(store: ObjectStore, settings: RepositorySettings, new_passphrase: bytes, *,
                            label: str | None = None, **kdf: int) -> dict:
    """Replace the slot the configured passphrase opens by one for `new_passphrase`: the new slot is written before
    the old one is deleted, so a crash leaves two keys, never none."""
    passphrases = [s for s in configured_secrets(settings) if s.kind == PASSPHRASE]
    if not passphrases:
        raise KeySecretError("no passphrase configured: set OLVM_REPOSITORY_PASSWORD_FILE or OLVM_REPOSITORY_PASSWORD "
                             "to the passphrase to change")
    config = await read_config(store)
    if config is None:
        raise RepositoryNotInitialised(store.bucket)
    if config["encryption"] == "none":
        raise RepositoryConfigError("the repository is not encrypted: it has no keys")
    slots = await list_slots(store)
    opened = _unlock(slots, passphrases, config["repo_id"])
    old = next(s for s in slots if s["id"] == opened.slot_id)
    slot = keys.make_slot(opened.key, new_passphrase, PASSPHRASE, old.get("label", "") if label is None else label,
                          **kdf)
    await _put_slot(store, slot)
    await store.erase(KEYS_PREFIX + opened.slot_id)
    return slot
