"""Sealing: what an encrypted repository's data looks like before it leaves a service (pure, no I/O).

A repository's master key is two independent 256-bit keys: `data_key` encrypts and authenticates (AES-256-GCM),
`chunk_key` names chunks (keyed BLAKE3 of the raw bytes), so the store learns nothing from a chunk's name and the same
bytes still get the same name within the repository (dedup), and only there.

Every sealed blob is a fresh random 96-bit nonce followed by the ciphertext and its 16-byte tag. The nonce is never
reused in practice: the collision bound for random GCM nonces (2^32 messages a key) is 4 PiB of 1 MiB chunks.
What a blob is bound to goes in as associated data, so a blob moved elsewhere does not open:
- a chunk: its name (a chunk swapped for another, or copied from another repository, is refused);
- an object (manifest, OVF, pack index, policy): `MAGIC` and its key in the bucket (an object renamed, swapped or
  copied in from another repository is refused).
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field

from blake3 import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import BackupError

NONCE = 12
TAG = 16
OVERHEAD = NONCE + TAG
MAGIC = b"OLVMSEAL1\n"  # starts every sealed object: a plaintext object never does (zstd, msgpack, XML, JSON)
CIPHER = "aes-256-gcm"
CHUNK_HASH = "blake3-keyed"  # how an encrypted repository names chunks


class Tampered(BackupError):
    """Authentication failed: the bytes are not what this repository's key sealed there."""

    template = "{what}: {reason}"

    def __init__(self, what: str, reason: str = "authentication failed: it was altered, moved, or written with "
                 "another repository's key") -> None:
        super().__init__(reason, what=what)


@dataclass(frozen=True, repr=False)
class RepoKey:
    """The master key of one repository. Never logged (`repr` shows only the repository id)."""

    repo_id: str
    data_key: bytes
    chunk_key: bytes
    _aead: AESGCM = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.data_key) != 32 or len(self.chunk_key) != 32:
            raise ValueError("a repository key is two 32-byte keys")
        object.__setattr__(self, "_aead", AESGCM(self.data_key))

    def __repr__(self) -> str:
        return f"RepoKey(repo_id={self.repo_id!r})"

    @classmethod
    def generate(cls) -> "RepoKey":
        return cls(str(uuid.uuid4()), os.urandom(32), os.urandom(32))

    def to_bytes(self) -> bytes:
        """The 64 key bytes, to be wrapped by a key slot (the repository id is stored beside, in clear)."""
        return self.data_key + self.chunk_key

    @classmethod
    def from_bytes(cls, repo_id: str, raw: bytes) -> "RepoKey":
        if len(raw) != 64:
            raise ValueError("a repository key is 64 bytes")
        return cls(repo_id, raw[:32], raw[32:])

    # -- chunks -------------------------------------------------------------------------------------------------
    def chunk_name(self, data: bytes | memoryview) -> str:
        return blake3(data, key=self.chunk_key).hexdigest()

    def seal(self, plaintext: bytes | memoryview, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE)
        return nonce + self._aead.encrypt(nonce, bytes(plaintext), aad)

    def open(self, blob: bytes | memoryview, aad: bytes, what: str) -> bytes:
        """The plaintext of `blob`, or Tampered naming `what`."""
        if len(blob) < OVERHEAD:
            raise Tampered(what, f"{len(blob)} bytes is too short to be sealed")
        blob = bytes(blob)
        try:
            return self._aead.decrypt(blob[:NONCE], blob[NONCE:], aad)
        except InvalidTag:
            raise Tampered(what) from None

    # -- objects ------------------------------------------------------------------------------------------------
    def seal_object(self, object_key: str, plaintext: bytes) -> bytes:
        return MAGIC + self.seal(plaintext, MAGIC + object_key.encode())

    def open_object(self, object_key: str, blob: bytes) -> bytes:
        if not is_sealed(blob):
            raise Tampered(object_key, "not sealed, in an encrypted repository")
        return self.open(memoryview(blob)[len(MAGIC):], MAGIC + object_key.encode(), object_key)


def is_sealed(blob: bytes | memoryview) -> bool:
    return bytes(blob[:len(MAGIC)]) == MAGIC


@dataclass(frozen=True)
class Sealer:
    """How one repository's objects are sealed and opened: with its key when it is encrypted, as they are when not.

    `legacy` names the plaintext objects an encrypted repository still reads: those written before it was encrypted
    (object key -> BLAKE3 of their bytes, recorded, sealed, when encryption was turned on). Any other plaintext
    object in an encrypted repository is refused: it could only have been put there by someone without the key.
    """

    key: RepoKey | None = None
    legacy: dict[str, str] = field(default_factory=dict)

    @property
    def encrypted(self) -> bool:
        return self.key is not None

    def seal(self, object_key: str, plaintext: bytes) -> bytes:
        return plaintext if self.key is None else self.key.seal_object(object_key, plaintext)

    def open(self, object_key: str, blob: bytes) -> bytes:
        if is_sealed(blob):
            if self.key is None:
                raise Tampered(object_key, "it is encrypted, and this repository has no key configured")
            return self.key.open_object(object_key, blob)
        if self.key is not None and self.legacy.get(object_key) != blake3(blob).hexdigest():
            raise Tampered(object_key, "not sealed, in an encrypted repository, and not one of the objects written "
                           "before it was encrypted")
        return blob


PLAIN = Sealer()  # an unencrypted repository's
