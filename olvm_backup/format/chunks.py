"""Chunks: content-addressed by a strong hash of their raw bytes, stored zstd-compressed, and sealed in an
encrypted repository.

New backups name chunks by BLAKE3 (about 5x cheaper than SHA-256 here, and
every byte read or restored is hashed); a manifest says which hash its chunk
names are, so restore points written with SHA-256 (format 1.0) still verify.
An encrypted repository names them by BLAKE3 keyed with its chunk key and
seals each stored chunk (crypto/sealing.py): `ChunkCodec` is that choice, made
once per repository (or per restore point being read).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import zstandard
from blake3 import blake3

from ..crypto.sealing import CHUNK_HASH as KEYED_HASH
from ..crypto.sealing import RepoKey, Sealer, Tampered
from ..errors import BackupError

ZSTD_LEVEL = 3
_ZERO_CACHE: dict[int, bytes] = {}


class CorruptChunk(BackupError):
    template = "corrupt chunk {digest}: {reason}"


CHUNK_HASH = "blake3"  # what this build names new chunks by
HASHES: dict[str, Callable[[bytes | memoryview], str]] = {
    "blake3": lambda data: blake3(data).hexdigest(),
    "sha256": lambda data: hashlib.sha256(data).hexdigest(),
}
KNOWN_HASHES = {*HASHES, KEYED_HASH}  # names a manifest may give; the keyed one needs the repository's key
SEALED = "+gcm"  # a codec ending so names a chunk sealed after compression: "zstd+gcm", "none+gcm"


def digest(data: bytes | memoryview, chunk_hash: str = CHUNK_HASH) -> str:
    return HASHES[chunk_hash](data)


def is_zero(data: bytes | memoryview) -> bool:
    """True if every byte is zero (compared against a cached zero buffer: fast in C)."""
    n = len(data)
    zeros = _ZERO_CACHE.get(n)
    if zeros is None:
        zeros = _ZERO_CACHE.setdefault(n, bytes(n)) if n <= 8 << 20 else bytes(n)
    return data == zeros


def compress(data: bytes) -> tuple[str, bytes]:
    """(codec, stored bytes): zstd unless it does not help (already compressed or random data)."""
    packed = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)
    if len(packed) < len(data):
        return "zstd", packed
    return "none", bytes(data)


def _decompress(codec: str, stored: bytes | memoryview, raw_size: int, name: str) -> bytes | memoryview:
    if codec == "zstd":
        try:
            return zstandard.ZstdDecompressor().decompress(stored, max_output_size=raw_size)
        except zstandard.ZstdError as e:
            raise CorruptChunk(f"does not decompress ({e})", digest=name) from None
    if codec == "none":
        return stored
    raise CorruptChunk(f"unknown codec {codec!r}", digest=name)


def decompress(codec: str, stored: bytes | memoryview, raw_size: int, expected_digest: str,
               chunk_hash: str) -> bytes | memoryview:
    """A plain repository's stored bytes back to the raw chunk, verified against its digest (by the hash its manifest
    names chunks by): never a silently wrong chunk."""
    return ChunkCodec(chunk_hash).load(codec, stored, raw_size, expected_digest)


@dataclass(frozen=True)
class ChunkCodec:
    """How one repository names, stores and reads back chunks: plain (`key` None) or encrypted."""

    chunk_hash: str = CHUNK_HASH
    key: RepoKey | None = None

    @classmethod
    def for_writing(cls, sealer: Sealer) -> "ChunkCodec":
        """What new backups of the repository use."""
        return cls(KEYED_HASH, sealer.key) if sealer.key is not None else cls()

    @classmethod
    def for_reading(cls, chunk_hash: str, sealer: Sealer) -> "ChunkCodec":
        """What reads the chunks of a restore point whose manifest names them by `chunk_hash`."""
        if chunk_hash == KEYED_HASH and sealer.key is None:
            raise BackupError("the restore point is encrypted, and no repository key is open to read it")
        return cls(chunk_hash, sealer.key if chunk_hash == KEYED_HASH else None)

    def name(self, data: bytes | memoryview) -> str:
        return self.key.chunk_name(data) if self.key is not None else digest(data, self.chunk_hash)

    def store(self, data: bytes, name: str) -> tuple[str, bytes]:
        """(codec, stored bytes) of the chunk called `name`: compressed when that helps, then sealed to its name."""
        codec, stored = compress(data)
        if self.key is None:
            return codec, stored
        return codec + SEALED, self.key.seal(stored, name.encode())

    def load(self, codec: str, stored: bytes | memoryview, raw_size: int, name: str) -> bytes | memoryview:
        """The raw chunk, authenticated (when sealed) and verified against its name: never a silently wrong chunk."""
        if codec.endswith(SEALED):
            if self.key is None:
                raise CorruptChunk("it is sealed, and its restore point is not encrypted", digest=name)
            try:
                stored = self.key.open(stored, name.encode(), f"chunk {name}")
            except Tampered as e:
                raise CorruptChunk(e.reason, digest=name) from None
            codec = codec[:-len(SEALED)]
        elif self.key is not None:
            raise CorruptChunk("it is not sealed, in an encrypted restore point", digest=name)
        data = _decompress(codec, stored, raw_size, name)
        if len(data) != raw_size or self.name(data) != name:
            raise CorruptChunk("content does not match its digest", digest=name)
        return data
