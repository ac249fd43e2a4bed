"""One restore: a restore point back into a VM on the engine.

New VM (default): imported from the saved OVF without its disk references
(so the engine never attaches the original disks to the copy), fresh disks
created with the original size and format, uploaded, attached as they were.

Everything that can be found wrong without touching the engine is checked
first (`_plan`: the restore point and its disks, the target VM or the new
VM's free name, the cluster, each disk's storage domain, the OVF), so a
restore refused there creates nothing. The VM and the empty disks are then
created side by side while the first disk's chunks come in. Each new disk's
id is chosen here and noted for the undo before the engine is asked (the
engine honours a given disk id), and the new VM's name before it is asked
for the VM, so a create cancelled while its call is in flight is undone too.
Disks are uploaded one at a time (a transfer is opened only when its upload
starts, so none idles towards its inactivity timeout, and one upload's
buffers are in memory at once); a disk's finalize overlaps the next disk's
upload; the disks are attached once all hold their data.
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
import uuid
from dataclasses import dataclass
from typing import AsyncIterator

from olvm_backup.commands import CommandResult, CommandSpec, parse_spec, run_phase
from olvm_backup.policy.requests import restore_commands
from olvm_backup.policy.store import list_policies
from olvm_backup.repository import catalog
from olvm_backup.repository.chunkfetch import ChunkFetcher
from olvm_backup.repository.holds import holding
from olvm_backup.config import Settings
from olvm_backup.engine import Engine, EngineNotFound
from olvm_backup.engine import cbt, provision
from olvm_backup.engine.connection import waits_told_to
from olvm_backup.engine.vms import find_vm
from olvm_backup.crypto.sealing import PLAIN, Sealer
from olvm_backup.errors import BackupError
from olvm_backup.format.chunks import ChunkCodec
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


@dataclass(frozen=True)
class _Plan:
    """What a restore will create, all checked before anything is."""

    manifest: Manifest
    disks: list[DiskRecord]
    storage_domains: list[str]  # one per disk: where its new disk goes
    target_vm: str | None       # the existing VM the disks go into (--target-vm)
    name: str = ""              # else the VM to create: its name, cluster and OVF
    cluster: str = ""
    ovf: str = ""


@dataclass
class _Uploaded:
    disk: DiskRecord
    disk_id: str
    transfer_id: str
    sent: int


class RestoreJob:
    def __init__(self, settings: Settings, engine: Engine, store: ObjectStore, bus: Bus,
                 request: RestoreRequest, sealer: Sealer = PLAIN) -> None:
        self.settings = settings
        self.sealer = sealer
        self.engine = engine
        self.store = store
        self.bus = bus
        self.request = request
        self.started = time.monotonic()
        self.created_vm: str | None = None
        self.creating_vm: str | None = None  # the name of a VM asked for, until the engine names its id
        self.created_disks: list[str] = []  # ids chosen here, noted before each create call
        self.original_removed = False  # replace: from here on the restored disks are all that is left of the VM
        self.bytes_total = 0
        self.bytes_done = 0
        self.commands: list[CommandSpec] = []  # before-restore and after-restore (olvm_backup/commands)
        self.commands_ran: list[str] = []  # the phases started: each at most once per restore

    async def event(self, kind: str, message: str, **fields) -> None:
        await self.bus.publish(RESTORE_EVENTS, RestoreEvent(
            request_id=self.request.request_id, restore_point=self.request.restore_point, kind=kind,
            message=message, at=time.time(), **fields), key=self.request.request_id)

    async def run(self) -> str | None:
        try:
            await self.event("accepted", f"restore of {self.request.restore_point} accepted")
            self.commands = [parse_spec({k: v for k, v in c.model_dump().items() if v is not None},
                                        f"request commands[{i}]") for i, c in enumerate(self.request.commands)]
            # Held in use from before the catalog is read until the end: prune keeps the restore point meanwhile.
            async with holding(self.store, self.request.restore_point, "restore", self.request.requested_by):
                with waits_told_to(lambda text: self.event("progress", text)):
                    vm_id = await self._run()
        except asyncio.CancelledError:
            await asyncio.shield(self._undo())
            await asyncio.shield(self._after_restore("interrupted"))
            raise
        except Exception as e:
            if isinstance(e, BackupError):
                log.error("restore %s failed: %s", self.request.request_id, e)
            else:
                log.exception("restore %s failed", self.request.request_id)
            await asyncio.shield(self._undo())
            await asyncio.shield(self._after_restore("failed"))
            kept = self.request.keep_failed or self.original_removed
            message = str(e) if not self.original_removed else (
                f"{e}; the original VM was already removed: the restored disks are kept "
                f"({', '.join(self.created_disks)})")
            await self.event("failed", message, outcome=RestoreOutcome(
                duration=self._took(), bytes_sent=self.bytes_done, error_type=type(e).__name__, kept=kept))
            return None
        return vm_id

    async def _commands(self, phase: str, **env: str) -> None:
        """The phase's pre/post commands, once per restore; a failing before-restore command fails the restore
        before anything is created, an after-restore one is a warning."""
        if phase in self.commands_ran or not any(c.phase == phase for c in self.commands):
            return
        self.commands_ran.append(phase)

        async def said(result: CommandResult) -> None:
            prefix = "" if result.status == "ok" else "warning: " if phase == "after-restore" or \
                result.status == "warned" else "failed: "
            await self.event("progress", prefix + result.message, detail={"command": result.detail()})

        failed = await run_phase(self.commands, phase, {"OLVM_RESTORE_POINT": self.request.restore_point,
                                                        "OLVM_REQUEST_ID": self.request.request_id,
                                                        "OLVM_VM": self.created_vm or "", **env}, said)
        if failed is not None and phase == "before-restore":
            raise BackupError(failed.message)

    async def _policy_commands(self, manifest: Manifest) -> list[CommandSpec]:
        """The restore phases' commands of the backup policy holding the restore point's VM, before the request's."""
        problems: list = []
        policies = await list_policies(self.store, problems)
        if problems:
            await self.event("progress", f"warning: {len(problems)} policy document(s) could not be read, their "
                             f"restore commands do not run ({problems[0]})")
        return restore_commands(policies, manifest.vm_id, manifest.vm_name)

    async def _after_restore(self, result: str) -> None:
        if "before-restore" in self.commands_ran:
            try:
                await self._commands("after-restore", OLVM_RESULT=result)
            except Exception as e:  # the bus is away: the restore's end is said all the same
                log.error("restore %s: its after-restore commands could not be said: %s", self.request.request_id, e)

    def _took(self) -> float:
        return round(time.monotonic() - self.started, 3)

    async def _undo(self) -> None:
        """Remove what this restore created, each part on its own (one failing does not keep the others). The
        engine runs our calls one at a time in order, so a create whose caller was cancelled has finished (or
        was never sent) by the time these look for what it made."""
        if self.request.keep_failed or self.original_removed:
            return
        vm_id = self.created_vm
        try:
            if vm_id is None and self.creating_vm:  # asked for, answer never heard: the name was free before
                vm_id = await provision.vm_exists(self.engine, self.creating_vm)
            if vm_id:
                await provision.remove_vm(self.engine, vm_id)
        except Exception as e:
            log.warning("restore %s: could not remove the VM it created (%s): %s", self.request.request_id,
                        vm_id or self.creating_vm, e)
        for disk_id in self.created_disks:  # removing one that was never made answers not found: nothing to do
            try:
                await provision.remove_disk(self.engine, disk_id)
            except Exception as e:
                log.warning("restore %s: could not remove the disk it created (%s): %s", self.request.request_id,
                            disk_id, e)

    def _selected(self, manifest: Manifest) -> list[DiskRecord]:
        if not self.request.disks:
            return list(manifest.disks)
        return [manifest.disk(key) for key in self.request.disks]

    async def _plan(self) -> _Plan:
        """Every check that needs no change on the engine, made before any change is: a restore refused here
        leaves the engine as it was."""
        req = self.request
        manifest = await catalog.find(self.store, req.restore_point)
        disks = self._selected(manifest)
        storage_domains = await self._storage_domains(disks)
        if req.target_vm:
            try:
                target = await find_vm(self.engine, req.target_vm)
            except EngineNotFound:
                raise BackupError(f"there is no VM named or with id {req.target_vm!r} to restore into "
                                  "(--target-vm)") from None
            return _Plan(manifest, disks, storage_domains, target.vm_id)
        name = manifest.vm_name if req.replace else (req.name or f"{manifest.vm_name}-restored")
        if not req.replace and await provision.vm_exists(self.engine, name):
            raise BackupError(f"a VM named {name} already exists: choose another --name or --replace")
        cluster = await self._cluster(manifest)
        ovf = without_disks(await catalog.read_ovf(self.store, manifest))
        return _Plan(manifest, disks, storage_domains, None, name=name, cluster=cluster, ovf=ovf)

    async def _cluster(self, manifest: Manifest) -> str:
        asked = self.request.cluster
        wanted = asked or manifest.vm.get("cluster_id")
        if not wanted:
            raise BackupError("no target cluster: the restore point does not name one; pass --cluster")
        try:
            return await provision.find_cluster(self.engine, wanted)
        except EngineNotFound:
            raise BackupError(f"there is no cluster {asked!r} (--cluster)" if asked else
                              f"the restore point's cluster {wanted} is no longer on the engine: pass --cluster"
                              ) from None

    async def _storage_domains(self, disks: list[DiskRecord]) -> list[str]:
        """Where each disk's new disk goes: --storage-domain, else the domain the disk was on."""
        asked = self.request.storage_domain
        if asked:
            try:
                return [await provision.find_storage_domain(self.engine, asked)] * len(disks)
            except EngineNotFound:
                raise BackupError(f"there is no storage domain {asked!r} (--storage-domain)") from None
        found: dict[str, str] = {}
        for d in disks:
            if not d.storage_domain:
                raise BackupError(f"no storage domain for disk {d.name}: pass --storage-domain")
            if d.storage_domain not in found:
                try:
                    found[d.storage_domain] = await provision.find_storage_domain(self.engine, d.storage_domain)
                except EngineNotFound:
                    raise BackupError(f"the storage domain {d.storage_domain} of disk {d.name} is no longer on "
                                      "the engine: pass --storage-domain") from None
        return [found[d.storage_domain] for d in disks]

    async def _run(self) -> str:
        req = self.request
        plan = await self._plan()
        manifest, disks = plan.manifest, plan.disks
        self.commands = await self._policy_commands(manifest) + self.commands
        await self._commands("before-restore")
        self.bytes_total = sum(d.map.data_bytes() for d in disks)
        await self.event("started", f"restoring {len(disks)} disk(s) of {manifest.vm_name} from "
                         f"{manifest.backup_id}", bytes_total=self.bytes_total, bytes_done=0)

        fetcher = ChunkFetcher(self.store, ChunkCodec.for_reading(manifest.chunk_hash, self.sealer))
        async with contextlib.AsyncExitStack() as windows:  # closes prefetches a failure left behind
            first = await windows.enter_async_context(Windows(manifest, disks[0], fetcher)) if disks else None
            create_disks = side_by_side(*(self._create_disk(d, sd)
                                          for d, sd in zip(disks, plan.storage_domains, strict=True)))
            if plan.target_vm or req.replace:
                vm_id, disk_ids = plan.target_vm, await create_disks
            else:
                vm_id, disk_ids = await side_by_side(self._create_vm(plan), create_disks)
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
            vm_id = await self._create_vm(plan)
        for done in uploaded:
            d = done.disk
            await provision.attach_disk(self.engine, vm_id, done.disk_id, interface=d.interface, bootable=d.bootable,
                                        active=d.active)
        if req.power_on:
            await provision.power_on(self.engine, vm_id)
        status = await provision.vm_status(self.engine, vm_id)
        await self._commands("after-restore", OLVM_RESULT="completed", OLVM_VM=vm_id)
        await self.event("completed", f"restored {manifest.vm_name} ({manifest.backup_id}) as VM {vm_id}, "
                         f"{status}", vm_id=vm_id, bytes_total=self.bytes_total, bytes_done=self.bytes_done,
                         outcome=RestoreOutcome(duration=self._took(), bytes_sent=self.bytes_done, status=status,
                                                disks=[d.name for d in disks], consistency=manifest.consistency))
        self.created_vm = self.creating_vm = None  # success: nothing to undo
        self.created_disks = []
        return vm_id

    async def _create_vm(self, plan: _Plan) -> str:
        req = self.request
        if req.replace:
            existing = await provision.vm_exists(self.engine, plan.name)
            if existing:
                await self.event("progress", f"removing the original VM {plan.name} ({existing}) to replace it")
                self.original_removed = True  # set first: removal may fail half-way
                await provision.remove_vm(self.engine, existing)
        # Noted before the call: a create cancelled in flight still makes the VM, and only its name finds it (the
        # engine picks a new VM's id). The name was free when the plan looked; another VM given it in between
        # would be taken for ours.
        self.creating_vm = plan.name
        self.created_vm = await provision.create_vm_from_ovf(self.engine, plan.ovf, name=plan.name,
                                                             cluster_id=plan.cluster, regenerate_ids=not req.replace)
        await self.event("progress", f"VM {plan.name} created ({self.created_vm})", vm_id=self.created_vm)
        return self.created_vm

    async def _create_disk(self, disk: DiskRecord, storage_domain: str) -> str:
        disk_id = str(uuid.uuid4())
        self.created_disks.append(disk_id)  # before the call: a create cancelled in flight is undone too
        return await provision.create_disk(self.engine, disk_id=disk_id, name=disk.name, size=disk.size,
                                           fmt=disk.format, sparse=disk.sparse, storage_domain=storage_domain)

    async def _upload(self, disk: DiskRecord, disk_id: str, windows: Windows) -> _Uploaded:
        """The disk's content, through a transfer opened now; on failure the transfer is cancelled."""
        transfer = await cbt.open_transfer(self.engine, disk_id, None, direction="upload")
        async with self._cancelled_on_failure(transfer.transfer_id):
            engine = self.settings.engine
            async with Transfer(transfer.transfer_url, transfer.proxy_url, ca_file=engine.ca_file,
                                insecure=engine.insecure, local_socket=engine.imageio_local_socket) as writer:
                sent = await upload_disk(disk, windows, writer, self._progress)
                over = ("the daemon's local socket" if writer.local else "TLS") + (
                    " through the proxy" if writer.url == transfer.proxy_url else "")
        log.info("disk %s: %d data bytes uploaded over %s", disk.name, sent, over)
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
