"""The manifest of one backup: the commit point of a restore point.

It names the VM (and where its OVF is), every disk with its layout and its
complete disk map, and where every chunk those maps name is stored. A restore
needs this one object plus ranged reads of the packs it names.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from dataclasses import fields as dataclass_fields
from typing import Any

import msgpack
import zstandard

from ..errors import BackupError
from .chunks import CHUNK_HASH, KNOWN_HASHES
from .diskmap import DiskMap

MANIFEST_MAJOR = 1
# 1.1: `chunk_hash` says what chunk names are (1.0 had none: SHA-256); 1.2: `consistency`; 1.3: `chunk_hash`
# `blake3-keyed` and codecs ending `+gcm` (an encrypted repository's, whose manifests are sealed objects);
# 1.4: `strategy`, `snapshot_id` and `snapshot_description` (the snapshot
# strategy's kept snapshot), a disk's `volume` and `layers`
MANIFEST_MINOR = 4


class ManifestError(BackupError):
    template = "manifest: {reason}"


@dataclass(frozen=True)
class Location:
    """Where a chunk's stored bytes are: a range of a pack object."""

    pack_key: str
    offset: int
    length: int
    raw_size: int
    codec: str


@dataclass
class DiskRecord:
    disk_id: str
    name: str
    size: int
    format: str                      # "cow" or "raw", as the engine had it
    interface: str                   # "virtio_scsi", "virtio", "ide", "sata"...
    bootable: bool
    active: bool
    sparse: bool
    storage_domain: str | None
    mode: str                        # "full" or "incremental": how this backup read the disk
    reason: str                      # why full, when it was
    map: DiskMap
    bytes_read: int = 0
    bytes_new: int = 0
    logical_name: str | None = None
    # The snapshot strategy (1.4): the disk's volume in the backup's snapshot, and the volumes an incremental read
    # (written since the parent's snapshot, oldest first).
    volume: str | None = None
    layers: list[str] = field(default_factory=list)


@dataclass
class Manifest:
    backup_id: str
    vm_id: str
    vm_name: str
    mode: str                        # "full" when every disk was read full, else "incremental"
    created_at: float
    completed_at: float
    to_checkpoint: str | None
    from_checkpoint: str | None
    parent_backup: str | None
    ovf_key: str
    request_id: str
    requested_by: str
    disks: list[DiskRecord]
    chunks: dict[str, Location]
    excluded_disks: list[str] = field(default_factory=list)
    vm: dict[str, Any] = field(default_factory=dict)  # cpu, memory, os, nics... as read from the engine
    chunk_hash: str = CHUNK_HASH     # the hash chunk names are made with ("sha256" in format 1.0)
    consistency: str = ""            # the guest's file systems: frozen, crash-consistent, at rest, unknown ("" < 1.2)
    strategy: str = "cbt"            # how it was taken: "cbt" or "snapshot" (absent before 1.4: cbt)
    snapshot_id: str | None = None   # the snapshot strategy's VM snapshot kept on the engine for the next incremental
    snapshot_description: str = ""  # its description on the engine ("olvm-backup <backup id> ..."); its correlation id
                                     # is the backup id

    def disk(self, key: str) -> DiskRecord:
        for d in self.disks:
            if key in (d.disk_id, d.name):
                return d
        raise ManifestError(f"backup {self.backup_id} has no disk {key!r}")

    def check_complete(self) -> None:
        """Every chunk a map names has a location: refuse to write a manifest that could not restore."""
        for d in self.disks:
            missing = d.map.digests() - self.chunks.keys()
            if missing:
                raise ManifestError(f"disk {d.name} names {len(missing)} chunk(s) with no known location")

    def stored_bytes(self) -> int:
        return sum(d.bytes_new for d in self.disks)


def encode_manifest(m: Manifest) -> bytes:
    m.check_complete()
    doc = {
        "v": [MANIFEST_MAJOR, MANIFEST_MINOR],
        **{k: v for k, v in asdict(m).items() if k not in ("disks", "chunks")},
        "disks": [{**{k: v for k, v in asdict(d).items() if k != "map"}, "map": d.map.to_wire()} for d in m.disks],
        "chunks": {dg: [loc.pack_key, loc.offset, loc.length, loc.raw_size, loc.codec] for dg, loc in m.chunks.items()},
    }
    return zstandard.ZstdCompressor(level=9).compress(msgpack.packb(doc, use_bin_type=True))


def decode_manifest(raw: bytes) -> Manifest:
    try:
        doc = msgpack.unpackb(zstandard.ZstdDecompressor().decompress(raw, max_output_size=1 << 30), raw=False)
    except (zstandard.ZstdError, ValueError, msgpack.UnpackException) as e:
        raise ManifestError(f"unreadable ({e})") from None
    if doc.get("v", [None])[0] != MANIFEST_MAJOR:
        raise ManifestError(f"format {doc.get('v')} is not readable by this build (major {MANIFEST_MAJOR})")
    try:
        # Fields a later minor version added are passed over: what this build knows still restores.
        disk_fields = {f.name for f in dataclass_fields(DiskRecord)} - {"map"}
        disks = [DiskRecord(**{k: v for k, v in d.items() if k in disk_fields}, map=DiskMap.from_wire(d["map"]))
                 for d in doc["disks"]]
        chunks = {dg: Location(*loc) for dg, loc in doc["chunks"].items()}
        known = {f.name for f in dataclass_fields(Manifest)} - {"disks", "chunks"}
        fields = {"chunk_hash": "sha256", **{k: v for k, v in doc.items() if k in known}}
        manifest = Manifest(**fields, disks=disks, chunks=chunks)
    except (TypeError, KeyError, ValueError) as e:
        raise ManifestError(f"malformed ({e})") from None
    if manifest.chunk_hash not in KNOWN_HASHES:
        raise ManifestError(f"chunks are named by {manifest.chunk_hash!r}, a hash this build does not know")
    return manifest
