"""Key slots: the repository's master key wrapped by a passphrase or a key file (pure, no I/O).

The master key (sealing.RepoKey, 64 bytes) never leaves a process in clear. A slot holds it wrapped with
AES-256-GCM under a key derived from one secret:
- a passphrase: scrypt (memory-hard: the default costs 128 MiB and about a third of a second per guess), its
  parameters and random salt stored in the slot, so a later build can raise the default and still open old slots;
- a key file: HKDF-SHA256 over its bytes (already random, at least 32 of them) with a stored random salt.
The slot's id, kind and repository id are the associated data: a slot copied into another repository, or edited to
claim another id, does not open. Several slots wrap the same master key; losing every one loses the backups.
"""
from __future__ import annotations

import base64
import getpass
import os
import socket
import time
import unicodedata
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ..errors import BackupError
from .sealing import NONCE, RepoKey

# The key slot object's format (schemas/FORMAT.md). A reader refuses another major and reads a newer minor.
SLOT_MAJOR = 1
SLOT_MINOR = 0

PASSPHRASE = "passphrase"
KEY_FILE = "keyfile"
KINDS = (PASSPHRASE, KEY_FILE)

# scrypt's cost: memory is 128 * n * r bytes (128 MiB by default). Lower values are for tests only.
SCRYPT_N = 2 ** 17
SCRYPT_R = 8
SCRYPT_P = 1
# What a slot may ask for: a slot planted in the bucket must not make opening the repository take all memory.
SCRYPT_MAX_MEMORY = 1 << 30
SCRYPT_MAX_P = 16

KEY_FILE_MIN = 32  # bytes: a key file is random, so 32 bytes are 256 bits
PASSPHRASE_MIN = 8  # characters, for a new passphrase (an old one opens whatever it is)
SALT = 16


class WrongKey(BackupError):
    """No slot opens with the secret given."""

    template = "{reason}"

    def __init__(self, reason: str = "the passphrase (or key file) opens no key of this repository") -> None:
        super().__init__(reason)


class SlotError(BackupError):
    """A slot this build cannot use (another major, a missing field, parameters out of bounds), or a secret that
    cannot make one."""

    template = "key slot {slot}: {reason}"

    def __init__(self, slot: str, reason: str) -> None:
        super().__init__(reason, slot=slot)


def passphrase_bytes(text: str) -> bytes:
    """A passphrase as the KDF takes it: Unicode NFC, UTF-8, so the same words typed on another system open."""
    return unicodedata.normalize("NFC", text).encode()


def whoami() -> str:
    """user@host, for a slot's `created_by`."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(slot_id: str, text: Any, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (TypeError, ValueError):
        raise SlotError(slot_id, f"{what} is not base64") from None


def _aad(slot_id: str, kind: str, repo_id: str) -> bytes:
    return f"olvm-backup key slot\n{slot_id}\n{kind}\n{repo_id}".encode()


def _derive(slot_id: str, kind: str, kdf: dict, secret: bytes) -> bytes:
    salt = _unb64(slot_id, kdf.get("salt"), "the salt")
    if kind == PASSPHRASE:
        try:
            n, r, p = (int(kdf[k]) for k in ("n", "r", "p"))
        except (KeyError, TypeError, ValueError):
            raise SlotError(slot_id, "scrypt parameters n, r, p missing or not numbers") from None
        if n < 2 or n & (n - 1) or r < 1 or not 1 <= p <= SCRYPT_MAX_P or 128 * n * r > SCRYPT_MAX_MEMORY:
            raise SlotError(slot_id, f"scrypt parameters n={n} r={r} p={p} are out of bounds (n a power of 2, "
                            f"128*n*r at most {SCRYPT_MAX_MEMORY >> 20} MiB, p at most {SCRYPT_MAX_P})")
        return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(secret)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"olvm-backup key file").derive(secret)


def _check_secret(kind: str, secret: bytes) -> None:
    if kind == PASSPHRASE and len(secret.decode(errors="replace")) < PASSPHRASE_MIN:
        raise SlotError("new", f"a passphrase of fewer than {PASSPHRASE_MIN} characters is refused")
    if kind == KEY_FILE and len(secret) < KEY_FILE_MIN:
        raise SlotError("new", f"a key file holds at least {KEY_FILE_MIN} random bytes, not {len(secret)}")


def make_slot(repo_key: RepoKey, secret: bytes, kind: str, label: str = "", *, n: int | None = None,
              r: int = SCRYPT_R, p: int = SCRYPT_P, created_by: str | None = None) -> dict:
    """A new slot wrapping `repo_key` under `secret` (a passphrase's bytes, `passphrase_bytes`, or a key file's).
    `n` defaults to SCRYPT_N, read at call time; pass a lower one in tests only."""
    if kind not in KINDS:
        raise SlotError("new", f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    _check_secret(kind, secret)
    slot_id = os.urandom(8).hex()
    salt = _b64(os.urandom(SALT))
    kdf: dict[str, Any] = ({"name": "scrypt", "n": SCRYPT_N if n is None else n, "r": r, "p": p, "salt": salt}
                           if kind == PASSPHRASE else {"name": "hkdf-sha256", "salt": salt})
    wrapping = AESGCM(_derive(slot_id, kind, kdf, secret))
    nonce = os.urandom(NONCE)
    wrapped = nonce + wrapping.encrypt(nonce, repo_key.to_bytes(), _aad(slot_id, kind, repo_key.repo_id))
    return {"v": [SLOT_MAJOR, SLOT_MINOR], "id": slot_id, "repo_id": repo_key.repo_id, "kind": kind, "kdf": kdf,
            "wrapped": _b64(wrapped), "label": label, "created_at": time.time(),
            "created_by": created_by or whoami()}


def check_slot(slot: Any) -> dict:
    """`slot` if this build can read it; SlotError naming it otherwise."""
    if not isinstance(slot, dict):
        raise SlotError("?", "not a JSON object")
    slot_id = str(slot.get("id", "?"))
    version = slot.get("v")
    if not (isinstance(version, list) and version and version[0] == SLOT_MAJOR):
        raise SlotError(slot_id, f"format {version!r} is not readable by this build (major {SLOT_MAJOR}); "
                        "use the build that wrote it")
    if slot.get("kind") not in KINDS:
        raise SlotError(slot_id, f"unknown kind {slot.get('kind')!r}")
    for name in ("repo_id", "kdf", "wrapped"):
        if name not in slot:
            raise SlotError(slot_id, f"no {name!r}")
    if not isinstance(slot["kdf"], dict):
        raise SlotError(slot_id, "'kdf' is not a JSON object")
    return slot


def unwrap(slot: dict, secret: bytes) -> RepoKey:
    """The master key `slot` wraps, if `secret` opens it; WrongKey otherwise."""
    check_slot(slot)
    slot_id, kind = slot["id"], slot["kind"]
    wrapped = _unb64(slot_id, slot["wrapped"], "'wrapped'")
    if not secret or len(wrapped) <= NONCE:
        raise WrongKey()
    wrapping = AESGCM(_derive(slot_id, kind, slot["kdf"], secret))
    try:
        raw = wrapping.decrypt(wrapped[:NONCE], wrapped[NONCE:], _aad(slot_id, kind, slot["repo_id"]))
    except InvalidTag:
        raise WrongKey() from None
    return RepoKey.from_bytes(slot["repo_id"], raw)
