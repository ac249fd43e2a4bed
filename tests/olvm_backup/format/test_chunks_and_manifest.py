"""Chunks verify themselves; manifests round-trip and refuse to name what is not stored."""
from __future__ import annotations

import hashlib
import os

import msgpack
import pytest
import zstandard

from olvm_backup.format.chunks import CHUNK_HASH, CorruptChunk, compress, decompress, digest, is_zero
from olvm_backup.format.diskmap import DiskMap, Segment
from olvm_backup.format.manifest import DiskRecord, Location, Manifest, ManifestError, decode_manifest, encode_manifest


def test_compressible_data_is_compressed_and_random_is_not():
    text = b"hello backup " * 10000
    codec, stored = compress(text)
    assert codec == "zstd" and len(stored) < len(text) // 10
    assert decompress(codec, stored, len(text), digest(text), CHUNK_HASH) == text
    noise = os.urandom(65536)
    assert compress(noise)[0] == "none"


def test_a_flipped_byte_is_caught():
    data = b"important" * 1000
    codec, stored = compress(data)
    broken = bytearray(stored)
    broken[len(broken) // 2] ^= 1
    with pytest.raises(CorruptChunk):
        decompress(codec, bytes(broken), len(data), digest(data), CHUNK_HASH)


def test_chunks_verify_by_the_hash_their_manifest_names():
    data = b"old restore point" * 1000
    codec, stored = compress(data)
    old_name = hashlib.sha256(data).hexdigest()
    assert digest(data, "sha256") == old_name and digest(data) != old_name
    assert decompress(codec, stored, len(data), old_name, "sha256") == data
    with pytest.raises(CorruptChunk, match="does not match"):  # never taken as good under the wrong hash
        decompress(codec, stored, len(data), old_name, CHUNK_HASH)


def test_zero_detection():
    assert is_zero(bytes(1 << 20)) and not is_zero(bytes(1 << 20 - 1) + b"\x01")


def _manifest(chunks) -> Manifest:
    disk = DiskRecord(disk_id="d1", name="root", size=1 << 30, format="cow", interface="virtio_scsi",
                      bootable=True, active=True, sparse=True, storage_domain="sd1", mode="full", reason="first",
                      map=DiskMap(1 << 30, [Segment(0, 4096, "a" * 64)]), bytes_read=4096, bytes_new=100)
    return Manifest(backup_id="b1", vm_id="v1", vm_name="web", mode="full", created_at=1.0, completed_at=2.0,
                    to_checkpoint="cp1", from_checkpoint=None, parent_backup=None, ovf_key="backups/v1/b1/vm.ovf",
                    request_id="r", requested_by="cli", disks=[disk], chunks=chunks, vm={"memory": 1 << 30})


def test_manifest_round_trip():
    m = _manifest({"a" * 64: Location("packs/x/p", 0, 100, 4096, "zstd")})
    back = decode_manifest(encode_manifest(m))
    assert back == m


def _rewritten(m: Manifest, edit) -> bytes:
    doc = msgpack.unpackb(zstandard.ZstdDecompressor().decompress(encode_manifest(m)), raw=False)
    edit(doc)
    return zstandard.ZstdCompressor().compress(msgpack.packb(doc, use_bin_type=True))


def test_format_1_0_manifests_name_chunks_by_sha256_and_unknown_hashes_are_refused():
    m = _manifest({"a" * 64: Location("packs/x/p", 0, 100, 4096, "zstd")})
    assert m.chunk_hash == CHUNK_HASH == "blake3"

    def as_1_0(doc):
        doc["v"] = [1, 0]
        del doc["chunk_hash"]
    assert decode_manifest(_rewritten(m, as_1_0)).chunk_hash == "sha256"
    with pytest.raises(ManifestError, match="does not know"):
        decode_manifest(_rewritten(m, lambda doc: doc.update(chunk_hash="md4")))


def test_a_later_minor_version_is_read_and_an_earlier_one_has_no_consistency():
    m = _manifest({"a" * 64: Location("packs/x/p", 0, 100, 4096, "zstd")})
    m.consistency = "frozen"
    assert decode_manifest(encode_manifest(m)).consistency == "frozen"

    def as_1_1(doc):
        doc["v"] = [1, 1]
        del doc["consistency"]
    assert decode_manifest(_rewritten(m, as_1_1)).consistency == ""

    def as_1_9(doc):  # a later build added fields this one does not know: what it knows still restores
        doc["v"] = [1, 9]
        doc["retention"] = {"keep_until": 2.0}
        doc["disks"][0]["encryption"] = None
    later = decode_manifest(_rewritten(m, as_1_9))
    assert later.disks == m.disks and later.chunks == m.chunks and later.consistency == "frozen"
    with pytest.raises(ManifestError, match="not readable by this build"):
        decode_manifest(_rewritten(m, lambda doc: doc.update(v=[2, 0])))


def test_manifest_naming_an_unstored_chunk_is_refused():
    with pytest.raises(ManifestError, match="no known location"):
        encode_manifest(_manifest({}))
