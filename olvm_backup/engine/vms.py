"""Reading VMs and their disks from the engine."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import ovirtsdk4.types as types

from .connection import Engine, EngineError, EngineNotFound


@dataclass(frozen=True)
class DiskInfo:
    disk_id: str
    name: str
    size: int
    format: str          # "cow" / "raw"
    interface: str
    bootable: bool
    active: bool
    sparse: bool
    storage_domain: str | None
    backup_enabled: bool  # disk.backup == incremental: the disk takes part in CBT
    logical_name: str | None = None


@dataclass(frozen=True)
class VmInfo:
    vm_id: str
    name: str
    status: str
    details: dict[str, Any] = field(default_factory=dict)
    guest_agent: bool = False  # the engine reports the guest's OS: an agent runs in it (and can freeze it)


def _enum(value) -> str | None:
    return value.value if value is not None and hasattr(value, "value") else value


def _vm_details(vm: types.Vm) -> dict[str, Any]:
    topology = vm.cpu.topology if vm.cpu is not None else None
    return {
        "memory": vm.memory,
        "cpu_sockets": topology.sockets if topology else None,
        "cpu_cores": topology.cores if topology else None,
        "cpu_threads": topology.threads if topology else None,
        "os_type": vm.os.type if vm.os is not None else None,
        "cluster_id": vm.cluster.id if vm.cluster is not None else None,
    }


async def find_vm(engine: Engine, name_or_id: str) -> VmInfo:
    def lookup() -> types.Vm:
        vms = engine.system.vms_service()
        try:
            return vms.vm_service(name_or_id).get()
        except Exception:
            found = vms.list(search=f"name={name_or_id}", case_sensitive=True)
            exact = [vm for vm in found if vm.name == name_or_id]
            if not exact:
                raise EngineNotFound(f"no VM named or with id {name_or_id!r}") from None
            return exact[0]

    vm = await engine.call(lookup, what=f"find VM {name_or_id}")
    return VmInfo(vm.id, vm.name, _enum(vm.status) or "unknown", _vm_details(vm),
                  guest_agent=vm.guest_operating_system is not None)


def ovf_of(entity) -> str | None:
    """The OVF a VM or a snapshot read with all_content carries (its initialization's configuration), if any."""
    init = entity.initialization
    return init.configuration.data if init is not None and init.configuration is not None else None


async def vm_ovf(engine: Engine, vm_id: str) -> str:
    vm = await engine.call(lambda: engine.system.vms_service().vm_service(vm_id).get(all_content=True),
                           what=f"read the OVF of VM {vm_id}")
    data = ovf_of(vm)
    if not data:
        raise EngineError(f"the engine returned no OVF for VM {vm.name} ({vm_id})")
    return data


async def vm_disks(engine: Engine, vm_id: str) -> list[DiskInfo]:
    def read() -> list[DiskInfo]:
        system = engine.system
        out = []
        for att in system.vms_service().vm_service(vm_id).disk_attachments_service().list():
            disk = system.disks_service().disk_service(att.disk.id).get()
            sds = disk.storage_domains or []
            out.append(DiskInfo(
                disk_id=disk.id, name=disk.alias or disk.name or disk.id, size=disk.provisioned_size or 0,
                format=_enum(disk.format) or "raw", interface=_enum(att.interface) or "virtio_scsi",
                bootable=bool(att.bootable), active=att.active is not False, sparse=bool(disk.sparse),
                storage_domain=sds[0].id if sds else None,
                backup_enabled=_enum(disk.backup) == "incremental", logical_name=att.logical_name,
            ))
        return out

    return await engine.call(read, what=f"list the disks of VM {vm_id}")
