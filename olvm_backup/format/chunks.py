"""Chunks: content-addressed by a strong hash of their raw bytes, stored zstd-compressed.

New backups name chunks by BLAKE3 (about 5x cheaper than SHA-256 here, and
every byte read or restored is hashed); a manifest says which hash its chunk
names are, so restore points written with SHA-256 (format 1.0) still verify.
"""
from __future__ import annotations

import hashlib
from typing import Callable

import zstandard
from blake3 import blake3

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


def decompress(codec: str, stored: bytes | memoryview, raw_size: int, expected_digest: str,
               chunk_hash: str) -> bytes | memoryview:
    """Stored bytes back to the raw chunk, verified against its digest (by the hash its manifest names chunks by):
    never a silently wrong chunk."""
    if codec == "zstd":
        try:
            data = zstandard.ZstdDecompressor().decompress(stored, max_output_size=raw_size)
        except zstandard.ZstdError as e:
            raise CorruptChunk(f"does not decompress ({e})", digest=expected_digest) from None
    elif codec == "none":
        data = stored
    else:
        raise CorruptChunk(f"unknown codec {codec!r}", digest=expected_digest)
    if len(data) != raw_size or digest(data, chunk_hash) != expected_digest:
        raise CorruptChunk("content does not match its digest", digest=expected_digest)
    return data
