"""One restore: a restore point back into a VM on the engine.

New VM (default): imported from the saved OVF without its disk references
(so the engine never attaches the original disks to the copy), fresh disks
created with the original size and format, uploaded, attached as they were.
`replace` removes the original VM first and keeps its id; `target_vm`
restores disks into an existing VM. On failure nothing half-restored stays
(unless asked), and no transfer stays open.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from olvm_backup import catalog
from olvm_backup.chunkfetch import ChunkFetcher
from olvm_backup.config import Settings
from olvm_backup.engine import Engine
from olvm_backup.engine import cbt, provision
from olvm_backup.engine.vms import find_vm
from olvm_backup.errors import BackupError
from olvm_backup.format.manifest import DiskRecord, Manifest
from olvm_backup.format.ovf import without_disks
from olvm_backup.imageio import ImageioClient
from olvm_backup.imageio_blocking import BlockingImageio
from olvm_backup.kafka import Bus
from olvm_backup.objectstore import ObjectStore
from schemas import RestoreEvent, RestoreRequest
from schemas.topics import RESTORE_EVENTS

from .upload import Windows, upload_disk

log = logging.getLogger(__name__)


class RestoreJob:
    def __init__(self, settings: Settings, engine: Engine, store: ObjectStore, bus: Bus, session,
                 request: RestoreRequest) -> None:
        self.settings = settings
        self.engine = engine
        self.store = store
        self.bus = bus
        self.session = session
        self.request = request
        self.started = time.monotonic()
        self.created_vm: str | None = None
        self.created_disks: list[str] = []
        self.bytes_total = 0
        self.bytes_done = 0

    async def event(self, kind: str, message: str, **fields) -> None:
        await self.bus.publish(RESTORE_EVENTS, RestoreEvent(
            request_id=self.request.request_id, restore_point=self.request.restore_point, kind=kind,
            message=message, at=time.time(), **fields), key=self.request.request_id)

    async def run(self) -> str | None:
        try:
            await self.event("accepted", f"restore of {self.request.restore_point} accepted")
            vm_id = await self._run()
        except asyncio.CancelledError:
            await asyncio.shield(self._undo())
            raise
        except Exception as e:
            if isinstance(e, BackupError):
                log.error("restore %s failed: %s", self.request.request_id, e)
            else:
                log.exception("restore %s failed", self.request.request_id)
            await asyncio.shield(self._undo())
            await self.event("failed", str(e), detail={"error_type": type(e).__name__,
                                                        "kept": self.request.keep_failed})
            return None
        return vm_id

    async def _undo(self) -> None:
        if self.request.keep_failed:
            return
        if self.created_vm:
            with contextlib.suppress(Exception):
                await provision.remove_vm(self.engine, self.created_vm)
        for disk_id in self.created_disks:
            with contextlib.suppress(Exception):
                await provision.remove_disk(self.engine, disk_id)

    def _selected(self, manifest: Manifest) -> list[DiskRecord]:
        if not self.request.disks:
            return list(manifest.disks)
        return [manifest.disk(key) for key in self.request.disks]

    async def _run(self) -> str:
        req = self.request
        manifest = await catalog.find(self.store, req.restore_point)
        disks = self._selected(manifest)
        self.bytes_total = sum(d.map.data_bytes() for d in disks)
        cluster = await provision.find_cluster(self.engine, req.cluster) if req.cluster else manifest.vm.get(
            "cluster_id")
        target_sd = await provision.find_storage_domain(self.engine, req.storage_domain) \
            if req.storage_domain else None
        await self.event("started", f"restoring {len(disks)} disk(s) of {manifest.vm_name} from "
                         f"{manifest.backup_id}", bytes_total=self.bytes_total, bytes_done=0)

        if req.target_vm:
            vm_id = (await find_vm(self.engine, req.target_vm)).vm_id
        else:
            vm_id = await self._create_vm(manifest, cluster)
        fetcher = ChunkFetcher(self.store)
        for disk in disks:
            await self._restore_disk(manifest, disk, vm_id, target_sd or disk.storage_domain, fetcher)
        if req.power_on:
            await provision.power_on(self.engine, vm_id)
        status = await provision.vm_status(self.engine, vm_id)
        await self.event("completed", f"restored {manifest.vm_name} ({manifest.backup_id}) as VM {vm_id}, "
                         f"{status}", vm_id=vm_id, bytes_total=self.bytes_total, bytes_done=self.bytes_done,
                         detail={"duration": round(time.monotonic() - self.started, 3), "status": status,
                                 "disks": [d.name for d in disks], "bytes_sent": self.bytes_done})
        self.created_vm = None  # success: nothing to undo
        self.created_disks = []
        return vm_id

    async def _create_vm(self, manifest: Manifest, cluster: str | None) -> str:
        req = self.request
        if not cluster:
            raise BackupError("no target cluster: the restore point does not name one; pass --cluster")
        ovf = without_disks(await catalog.read_ovf(self.store, manifest))
        if req.replace:
            name = manifest.vm_name
            existing = await provision.vm_exists(self.engine, name)
            if existing:
                await self.event("progress", f"removing the original VM {name} ({existing}) to replace it")
                await provision.remove_vm(self.engine, existing)
        else:
            name = req.name or f"{manifest.vm_name}-restored"
            if await provision.vm_exists(self.engine, name):
                raise BackupError(f"a VM named {name} already exists: choose another --name or --replace")
        self.created_vm = await provision.create_vm_from_ovf(self.engine, ovf, name=name, cluster_id=cluster,
                                                             regenerate_ids=not req.replace)
        await self.event("progress", f"VM {name} created ({self.created_vm})", vm_id=self.created_vm)
        return self.created_vm

    async def _restore_disk(self, manifest: Manifest, disk: DiskRecord, vm_id: str, storage_domain: str | None,
                            fetcher: ChunkFetcher) -> None:
        if not storage_domain:
            raise BackupError(f"no storage domain for disk {disk.name}: pass --storage-domain")
        # The first windows come from the store while the engine creates the disk and opens the transfer.
        async with Windows(manifest, disk, fetcher) as windows:
            disk_id = await provision.create_disk(self.engine, name=disk.name, size=disk.size, fmt=disk.format,
                                                  sparse=disk.sparse, storage_domain=storage_domain)
            self.created_disks.append(disk_id)
            transfer = await cbt.open_transfer(self.engine, disk_id, None, direction="upload")
            try:
                client = ImageioClient(self.session, transfer.transfer_url, transfer.proxy_url)
                writer = BlockingImageio(transfer.transfer_url, transfer.proxy_url, self.settings.engine.ca_file,
                                        self.settings.engine.insecure)
                try:
                    sent = await upload_disk(disk, windows, client, writer, self._progress)
                finally:
                    writer.close()
                await cbt.finalize_transfer(self.engine, transfer.transfer_id)
            except BaseException:
                await asyncio.shield(cbt.cancel_transfer(self.engine, transfer.transfer_id))
                raise
        await provision.attach_disk(self.engine, vm_id, disk_id, interface=disk.interface, bootable=disk.bootable,
                                    active=disk.active)
        await self.event("progress", f"disk {disk.name} restored ({sent} data bytes)", vm_id=vm_id,
                         bytes_total=self.bytes_total, bytes_done=self.bytes_done)

    async def _progress(self, sent: int) -> None:
        self.bytes_done += sent
        await self.event("progress", "uploading", bytes_total=self.bytes_total, bytes_done=self.bytes_done)
