"""Verify a restore point: read every chunk it names, check each against its digest, say where it hurts."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from .chunkfetch import ChunkFetcher
from ..crypto.sealing import PLAIN, Sealer
from ..errors import BackupError
from ..format.chunks import ChunkCodec
from ..format.manifest import Manifest
from ..objectstore import ObjectStore

BATCH = 256  # chunks per fetch round: bounds memory to ~BATCH chunk sizes


@dataclass(frozen=True)
class Damage:
    disk: str
    offset: int
    length: int
    digest: str
    pack: str  # the pack object holding the chunk ('' when the manifest has no location for it)
    problem: str


@dataclass(frozen=True)
class VerifyReport:
    backup_id: str
    chunks_checked: int
    bytes_checked: int
    damage: list[Damage]

    @property
    def ok(self) -> bool:
        return not self.damage


async def verify(store: ObjectStore, manifest: Manifest, sealer: Sealer = PLAIN) -> VerifyReport:
    users: dict[str, list[tuple[str, int, int]]] = defaultdict(list)  # digest -> where the disks use it
    for disk in manifest.disks:
        for seg in disk.map:
            users[seg.digest].append((disk.name, seg.offset, seg.length))
    damage: list[Damage] = []
    checked = 0
    fetcher = ChunkFetcher(store, ChunkCodec.for_reading(manifest.chunk_hash, sealer))
    digests = sorted(users, key=lambda d: (manifest.chunks[d].pack_key, manifest.chunks[d].offset)
                     if d in manifest.chunks else ("", 0))
    for i in range(0, len(digests), BATCH):
        batch = digests[i:i + BATCH]
        known = {d: manifest.chunks[d] for d in batch if d in manifest.chunks}
        results = await fetcher.fetch(known)
        for d in batch:
            outcome = results.get(d) if d in known else BackupError("the manifest has no location for it")
            if isinstance(outcome, BackupError):
                pack = known[d].pack_key if d in known else ""
                damage += [Damage(disk, off, n, d, pack, str(outcome)) for disk, off, n in users[d]]
            else:
                checked += len(outcome)
    return VerifyReport(manifest.backup_id, len(digests), checked, sorted(damage, key=lambda x: (x.disk, x.offset)))
