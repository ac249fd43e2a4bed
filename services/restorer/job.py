"""One restore: a restore point back into a VM on the engine.

New VM (default): imported from the saved OVF without its disk references
(so the engine never attaches the original disks to the copy), fresh disks
created with the original size and format, uploaded, attached as they were.

The VM and the empty disks are created side by side while the first disk's
chunks come in. Disks are uploaded one at a time (a transfer is opened only
when its upload starts, so none idles towards its inactivity timeout, and
one upload's buffers are in memory at once); a disk's finalize overlaps the
next disk's upload; the disks are attached once all hold their data.
`replace` keeps the original VM's id, and removes the original only once
the restored disks hold their data: a restore that fails before leaves it
untouched. `target_vm` restores disks into an existing VM. On failure
nothing half-restored stays (unless asked), and no transfer stays open.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import AsyncIterator

from olvm_backup.repository import catalog
from olvm_backup.repository.chunkfetch import ChunkFetcher
from olvm_backup.config import Settings
from olvm_backup.engine import Engine
from olvm_backup.engine import cbt, provision
from olvm_backup.engine.connection import waits_told_to
from olvm_backup.engine.vms import find_vm
from olvm_backup.errors import BackupError
from olvm_backup.format.manifest import DiskRecord, Manifest
from olvm_backup.format.ovf import without_disks
from olvm_backup.imageio import Transfer
from olvm_backup.kafka import Bus
from olvm_backup.objectstore import ObjectStore
from olvm_backup.concurrency import first_failure, side_by_side
from schemas import RestoreEvent, RestoreOutcome, RestoreRequest
from schemas.topics import RESTORE_EVENTS

from .upload import Windows, upload_disk

log = logging.getLogger(__name__)


@dataclass
class _Uploaded:
    disk: DiskRecord
    disk_id: str
    transfer_id: str
    sent: int


class RestoreJob:
    def __init__(self, settings: Settings, engine: Engine, store: ObjectStore, bus: Bus,
                 request: RestoreRequest) -> None:
        self.settings = settings
        self.engine = engine
        self.store = store
        self.bus = bus
        self.request = request
        self.started = time.monotonic()
        self.created_vm: str | None = None
        self.created_disks: list[str] = []
        self.original_removed = False  # replace: from here on the restored disks are all that is left of the VM
        self.bytes_total = 0
        self.bytes_done = 0

    async def event(self, kind: str, message: str, **fields) -> None:
        await self.bus.publish(RESTORE_EVENTS, RestoreEvent(
            request_id=self.request.request_id, restore_point=self.request.restore_point, kind=kind,
            message=message, at=time.time(), **fields), key=self.request.request_id)

    async def run(self) -> str | None:
        try:
            await self.event("accepted", f"restore of {self.request.restore_point} accepted")
            with waits_told_to(lambda text: self.event("progress", text)):
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
            kept = self.request.keep_failed or self.original_removed
            message = str(e) if not self.original_removed else (
                f"{e}; the original VM was already removed: the restored disks are kept "
                f"({', '.join(self.created_disks)})")
            await self.event("failed", message, outcome=RestoreOutcome(
                duration=self._took(), bytes_sent=self.bytes_done, error_type=type(e).__name__, kept=kept))
            return None
        return vm_id

    def _took(self) -> float:
        return round(time.monotonic() - self.started, 3)

    async def _undo(self) -> None:
        if self.request.keep_failed or self.original_removed:
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
        if not cluster and not req.target_vm:
            raise BackupError("no target cluster: the restore point does not name one; pass --cluster")
        target_sd = await provision.find_storage_domain(self.engine, req.storage_domain) \
            if req.storage_domain else None
        await self.event("started", f"restoring {len(disks)} disk(s) of {manifest.vm_name} from "
                         f"{manifest.backup_id}", bytes_total=self.bytes_total, bytes_done=0)

        fetcher = ChunkFetcher(self.store, manifest.chunk_hash)
        async with contextlib.AsyncExitStack() as windows:  # closes prefetches a failure left behind
            first = await windows.enter_async_context(Windows(manifest, disks[0], fetcher)) if disks else None
            create_disks = side_by_side(*(self._create_disk(d, target_sd or d.storage_domain) for d in disks))
            if req.replace:
                vm_id, disk_ids = None, await create_disks
            else:
                vm_id, disk_ids = await side_by_side(self._target_vm(manifest, cluster), create_disks)
            uploaded: list[_Uploaded] = []
            try:
                async with asyncio.TaskGroup() as finishing:
                    for n, (disk, disk_id) in enumerate(zip(disks, disk_ids, strict=True)):
                        window = first if n == 0 else await windows.enter_async_context(
                            Windows(manifest, disk, fetcher))
                        uploaded.append(await self._upload(disk, disk_id, window))  # consumes every window
                        finishing.create_task(self._finalize(uploaded[-1]))
            except BaseExceptionGroup as failed:
                raise first_failure(failed) from None
        if vm_id is None:  # replace: every disk holds its data, the original can go
            vm_id = await self._create_vm(manifest, cluster)
        for done in uploaded:
            d = done.disk
            await provision.attach_disk(self.engine, vm_id, done.disk_id, interface=d.interface, bootable=d.bootable,
                                        active=d.active)
        if req.power_on:
            await provision.power_on(self.engine, vm_id)
        status = await provision.vm_status(self.engine, vm_id)
        await self.event("completed", f"restored {manifest.vm_name} ({manifest.backup_id}) as VM {vm_id}, "
                         f"{status}", vm_id=vm_id, bytes_total=self.bytes_total, bytes_done=self.bytes_done,
                         outcome=RestoreOutcome(duration=self._took(), bytes_sent=self.bytes_done, status=status,
                                                disks=[d.name for d in disks], consistency=manifest.consistency))
        self.created_vm = None  # success: nothing to undo
        self.created_disks = []
        return vm_id

    async def _target_vm(self, manifest: Manifest, cluster: str | None) -> str:
        if self.request.target_vm:
            return (await find_vm(self.engine, self.request.target_vm)).vm_id
        return await self._create_vm(manifest, cluster)

    async def _create_vm(self, manifest: Manifest, cluster: str) -> str:
        req = self.request
        ovf = without_disks(await catalog.read_ovf(self.store, manifest))
        if req.replace:
            name = manifest.vm_name
            existing = await provision.vm_exists(self.engine, name)
            if existing:
                await self.event("progress", f"removing the original VM {name} ({existing}) to replace it")
                self.original_removed = True  # set first: removal may fail half-way
                await provision.remove_vm(self.engine, existing)
        else:
            name = req.name or f"{manifest.vm_name}-restored"
            if await provision.vm_exists(self.engine, name):
                raise BackupError(f"a VM named {name} already exists: choose another --name or --replace")
        self.created_vm = await provision.create_vm_from_ovf(self.engine, ovf, name=name, cluster_id=cluster,
                                                             regenerate_ids=not req.replace)
        await self.event("progress", f"VM {name} created ({self.created_vm})", vm_id=self.created_vm)
        return self.created_vm

    async def _create_disk(self, disk: DiskRecord, storage_domain: str | None) -> str:
        if not storage_domain:
            raise BackupError(f"no storage domain for disk {disk.name}: pass --storage-domain")
        return await provision.create_disk(self.engine, name=disk.name, size=disk.size, fmt=disk.format,
                                           sparse=disk.sparse, storage_domain=storage_domain,
                                           created=self.created_disks.append)

    async def _upload(self, disk: DiskRecord, disk_id: str, windows: Windows) -> _Uploaded:
        """The disk's content, through a transfer opened now; on failure the transfer is cancelled."""
        transfer = await cbt.open_transfer(self.engine, disk_id, None, direction="upload")
        async with self._cancelled_on_failure(transfer.transfer_id):
            engine = self.settings.engine
            async with Transfer(transfer.transfer_url, transfer.proxy_url, ca_file=engine.ca_file,
                                insecure=engine.insecure, local_socket=engine.imageio_local_socket) as writer:
                sent = await upload_disk(disk, windows, writer, self._progress)
        return _Uploaded(disk, disk_id, transfer.transfer_id, sent)

    async def _finalize(self, done: _Uploaded) -> None:
        """Finalize the disk's transfer (cancelled if that fails)."""
        async with self._cancelled_on_failure(done.transfer_id):
            await cbt.finalize_transfer(self.engine, done.transfer_id)
        await self.event("progress", f"disk {done.disk.name} restored ({done.sent} data bytes)",
                         bytes_total=self.bytes_total, bytes_done=self.bytes_done)

    @contextlib.asynccontextmanager
    async def _cancelled_on_failure(self, transfer_id: str) -> AsyncIterator[None]:
        """No transfer stays open: a failure or cancellation inside cancels it on the engine, then goes on."""
        try:
            yield
        except BaseException:
            await asyncio.shield(cbt.cancel_transfer(self.engine, transfer_id))
            raise

    async def _progress(self, sent: int) -> None:
        self.bytes_done += sent
        await self.event("progress", "uploading", bytes_total=self.bytes_total, bytes_done=self.bytes_done)
