"""Creating things on the engine for a restore: VMs from OVF, disks, attachments, power."""
from __future__ import annotations

import contextlib
import logging

import ovirtsdk4 as sdk
import ovirtsdk4.types as types

from ..retry import ENGINE_CREATE
from .connection import Engine, EngineNotFound
from .vms import _enum

log = logging.getLogger(__name__)

DISK_READY_DEADLINE = 600.0
VM_POWER_DEADLINE = 600.0


async def find_cluster(engine: Engine, name_or_id: str) -> str:
    def lookup() -> str:
        clusters = engine.system.clusters_service()
        for c in clusters.list():
            if name_or_id in (c.id, c.name):
                return c.id
        raise EngineNotFound(f"no cluster {name_or_id!r}")
    return await engine.call(lookup, what=f"find cluster {name_or_id}")


async def find_storage_domain(engine: Engine, name_or_id: str) -> str:
    def lookup() -> str:
        for sd in engine.system.storage_domains_service().list():
            if name_or_id in (sd.id, sd.name):
                return sd.id
        raise EngineNotFound(f"no storage domain {name_or_id!r}")
    return await engine.call(lookup, what=f"find storage domain {name_or_id}")


async def create_vm_from_ovf(engine: Engine, ovf: str, *, name: str, cluster_id: str,
                             regenerate_ids: bool) -> str:
    def add() -> str:
        vm = engine.system.vms_service().add(types.Vm(
            name=name, cluster=types.Cluster(id=cluster_id),
            initialization=types.Initialization(
                configuration=types.Configuration(type=types.ConfigurationType.OVF, data=ovf),
                regenerate_ids=regenerate_ids)))
        return vm.id
    return await engine.call(add, what=f"create VM {name} from its OVF", policy=ENGINE_CREATE)


async def create_disk(engine: Engine, *, disk_id: str, name: str, size: int, fmt: str, sparse: bool,
                      storage_domain: str) -> str:
    """Create the disk with the id the caller chose (the engine honours `disk.id` on add), and wait until it is
    ready. The caller knows the id before the call, so it can remove a disk whose create it never heard back
    from (cancelled in flight, or an answer lost)."""
    attempts = 0

    def add() -> str:
        nonlocal attempts
        attempts += 1
        disks = engine.system.disks_service()
        if attempts > 1:  # an earlier attempt may have made it before its answer was lost: the id is ours alone
            with contextlib.suppress(sdk.NotFoundError):
                return disks.disk_service(disk_id).get().id
        disk = disks.add(types.Disk(
            id=disk_id, name=name, alias=name, provisioned_size=size, format=types.DiskFormat(fmt),
            sparse=sparse, content_type=types.DiskContentType.DATA,
            # The engine tracks changed blocks (CBT) only for qcow2 disks and refuses it for raw ones.
            backup=types.DiskBackup.INCREMENTAL if fmt == "cow" else types.DiskBackup.NONE,
            storage_domains=[types.StorageDomain(id=storage_domain)]))
        return disk.id
    new_id = await engine.call(add, what=f"create disk {name}", policy=ENGINE_CREATE)
    await engine.wait_for(lambda: engine.system.disks_service().disk_service(new_id).get(),
                          lambda d: _enum(d.status) == "ok",
                          failed=lambda d: "disk became illegal" if _enum(d.status) == "illegal" else None,
                          what=f"disk {name} to be ready", deadline=DISK_READY_DEADLINE)
    return new_id


async def attach_disk(engine: Engine, vm_id: str, disk_id: str, *, interface: str, bootable: bool,
                      active: bool) -> None:
    def add() -> None:
        engine.system.vms_service().vm_service(vm_id).disk_attachments_service().add(types.DiskAttachment(
            disk=types.Disk(id=disk_id), interface=types.DiskInterface(interface), bootable=bootable,
            active=active))
    await engine.call(add, what=f"attach disk {disk_id} to VM {vm_id}")


async def remove_disk(engine: Engine, disk_id: str) -> None:
    try:
        await engine.call(lambda: engine.system.disks_service().disk_service(disk_id).remove(),
                          what=f"remove disk {disk_id}")
    except EngineNotFound:
        pass


async def remove_vm(engine: Engine, vm_id: str) -> None:
    """Remove a VM with its disks (used to undo a failed restore and for --replace)."""
    svc = lambda: engine.system.vms_service().vm_service(vm_id)
    try:
        vm = await engine.call(lambda: svc().get(), what=f"read VM {vm_id}")
        if _enum(vm.status) not in ("down", None):
            await engine.call(lambda: svc().stop(), what=f"stop VM {vm_id}")
            await engine.wait_for(lambda: svc().get(), lambda v: _enum(v.status) == "down",
                                  what=f"VM {vm_id} to stop", deadline=VM_POWER_DEADLINE)
        await engine.call(lambda: svc().remove(), what=f"remove VM {vm_id}")
    except EngineNotFound:
        pass


async def power_on(engine: Engine, vm_id: str) -> None:
    svc = lambda: engine.system.vms_service().vm_service(vm_id)
    await engine.call(lambda: svc().start(), what=f"start VM {vm_id}")
    await engine.wait_for(lambda: svc().get(), lambda v: _enum(v.status) == "up",
                          failed=lambda v: None if _enum(v.status) in ("down", "wait_for_launch", "powering_up",
                                                                       "up", "unknown", None)
                          else f"VM went {_enum(v.status)}",
                          what=f"VM {vm_id} to come up", deadline=VM_POWER_DEADLINE)


async def vm_exists(engine: Engine, name: str) -> str | None:
    vms = await engine.call(lambda: engine.system.vms_service().list(search=f"name={name}", case_sensitive=True),
                            what=f"look for VM {name}")
    exact = [v for v in vms if v.name == name]
    return exact[0].id if exact else None


async def vm_status(engine: Engine, vm_id: str) -> str:
    vm = await engine.call(lambda: engine.system.vms_service().vm_service(vm_id).get(), what="read VM")
    return _enum(vm.status) or "unknown"
