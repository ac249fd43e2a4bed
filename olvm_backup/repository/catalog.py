"""The catalog lives in object storage: a fresh install pointed at the bucket lists and restores everything.

Layout (schemas/FORMAT.md):
  backups/<vm_id>/<backup_id>/vm.ovf     the VM's OVF as the engine gave it
  backups/<vm_id>/<backup_id>/manifest   the commit point (format/manifest.py), written last
  packs/<xx>/<pack_id>                   chunk data (writers)
  index/<pack_id>                        what each pack holds (writers), for dedup
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from ..errors import BackupError, ObjectLocked, ObjectNotFound
from ..format.manifest import Manifest, decode_manifest, encode_manifest
from ..objectstore import ObjectStore
from ..objectstore.locking import utcnow

log = logging.getLogger(__name__)


class RestorePointNotFound(BackupError):
    template = "no restore point {backup_id} in the catalog"

    def __init__(self, backup_id: str) -> None:
        super().__init__("", backup_id=backup_id)


def backup_prefix(vm_id: str, backup_id: str) -> str:
    return f"backups/{vm_id}/{backup_id}/"


def manifest_key(vm_id: str, backup_id: str) -> str:
    return backup_prefix(vm_id, backup_id) + "manifest"


def ovf_key(vm_id: str, backup_id: str) -> str:
    return backup_prefix(vm_id, backup_id) + "vm.ovf"


@dataclass(frozen=True)
class CatalogEntry:
    vm_id: str
    backup_id: str
    key: str


async def write_ovf(store: ObjectStore, vm_id: str, backup_id: str, ovf: str) -> str:
    key = ovf_key(vm_id, backup_id)
    await store.put(key, ovf.encode())
    return key


async def commit(store: ObjectStore, manifest: Manifest) -> str:
    """Write the manifest: from this moment the restore point exists. Its data and OVF must be durable already."""
    if await store.head(manifest.ovf_key) is None:
        raise BackupError(f"refusing to commit backup {manifest.backup_id}: its OVF {manifest.ovf_key} is missing")
    key = manifest_key(manifest.vm_id, manifest.backup_id)
    await store.put(key, encode_manifest(manifest))
    return key


async def entries(store: ObjectStore, vm_id: str | None = None) -> list[CatalogEntry]:
    prefix = f"backups/{vm_id}/" if vm_id else "backups/"
    out = []
    async for info in store.list(prefix):
        parts = info.key.split("/")
        if len(parts) == 4 and parts[3] == "manifest":
            out.append(CatalogEntry(parts[1], parts[2], info.key))
    return out


async def load(store: ObjectStore, entry: CatalogEntry) -> Manifest:
    return decode_manifest(await store.get(entry.key))


async def list_manifests(store: ObjectStore, vm_id: str | None = None) -> list[Manifest]:
    """Every committed restore point (of one VM), oldest first."""
    manifests = [await load(store, e) for e in await entries(store, vm_id)]
    return sorted(manifests, key=lambda m: m.completed_at)


async def find(store: ObjectStore, backup_id: str) -> Manifest:
    for entry in await entries(store):
        if entry.backup_id == backup_id:
            return await load(store, entry)
    raise RestorePointNotFound(backup_id)


async def latest(store: ObjectStore, vm_id: str) -> Manifest | None:
    manifests = await list_manifests(store, vm_id)
    return manifests[-1] if manifests else None


async def read_ovf(store: ObjectStore, manifest: Manifest) -> str:
    try:
        return (await store.get(manifest.ovf_key)).decode()
    except ObjectNotFound:
        raise BackupError(f"backup {manifest.backup_id}: its OVF {manifest.ovf_key} is missing") from None


async def forget(store: ObjectStore, manifest: Manifest) -> list[str]:
    """Take a restore point out of the catalog: its manifest (the commit point) first, so it is never listed
    without its OVF, then its OVF; returns the keys deleted. Its chunks stay in their packs (other restore points
    may name them) until garbage collection. A lock on either object (S3 Object Lock) refuses, ObjectLocked, before
    anything is deleted."""
    keys = [manifest_key(manifest.vm_id, manifest.backup_id), manifest.ovf_key]
    now = utcnow()
    for key in keys:
        info = await store.head(key)
        if info is not None and info.lock is not None and info.lock.holds(now):
            raise ObjectLocked(key, info.lock.describe(now))
    for key in keys:
        await store.delete(key)
    return keys
