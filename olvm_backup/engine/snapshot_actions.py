"""What an administrator does with a VM's snapshot beyond taking and removing it (engine/snapshots.py): revert the
VM to it, clone a new VM from it, and power the VM off first when told to.

The engine's own rules: reverting (`POST /vms/{vm}/snapshots/{id}/restore`) needs the VM down, and the snapshots
taken after the one reverted to are removed with it; a VM made from a snapshot (`POST /vms` naming the snapshot)
gets copies of the snapshot's disks and its configuration. Both lock the VM for a while: every wait has a deadline.
"""
from __future__ import annotations

import ovirtsdk4.types as types

from ..retry import ENGINE_CREATE, ENGINE_START
from .connection import Engine, EngineError
from .vms import _enum

POWER_OFF_DEADLINE = 300.0
REVERT_DEADLINE = 900.0
CLONE_DEADLINE = 3600.0  # the disks are copied: minutes for big ones
_BUSY = ("image_locked", "locked")


async def power_off(engine: Engine, vm_id: str, vm_name: str) -> None:
    """Stop the VM (power off, not a guest shutdown) and wait until the engine says it is down."""
    svc = lambda: engine.system.vms_service().vm_service(vm_id)
    await engine.call(lambda: svc().stop(), what=f"power off VM {vm_name}", policy=ENGINE_START)
    await engine.wait_for(lambda: svc().get(), lambda v: _enum(v.status) == "down",
                          what=f"VM {vm_name} to be down", deadline=POWER_OFF_DEADLINE)


def _settled(snaps: list[types.Snapshot]) -> bool:
    """No snapshot of the VM locked (a revert removes the later ones, and restores the chain, in the background)."""
    return all(_enum(s.snapshot_status) == "ok" for s in snaps if _enum(s.snapshot_type) != "active")


async def revert(engine: Engine, vm_id: str, vm_name: str, snapshot_id: str, *, correlation_id: str) -> None:
    """Revert the VM's disks and configuration to the snapshot, and wait until the VM and its snapshots are no
    longer locked. The engine refuses it (a 409 or a failed action) while the VM runs."""
    vm_svc = lambda: engine.system.vms_service().vm_service(vm_id)
    snap_svc = lambda: vm_svc().snapshots_service().snapshot_service(snapshot_id)
    await engine.call(lambda: snap_svc().restore(query={"correlation_id": correlation_id}),
                      what=f"revert VM {vm_name} to snapshot {snapshot_id}", policy=ENGINE_START)
    await engine.wait_for(lambda: vm_svc().get(), lambda v: _enum(v.status) not in _BUSY,
                          what=f"VM {vm_name} to be reverted to snapshot {snapshot_id}", deadline=REVERT_DEADLINE)
    await engine.wait_for(lambda: vm_svc().snapshots_service().list(), _settled,
                          what=f"the snapshots of VM {vm_name} to settle after the revert", deadline=REVERT_DEADLINE)


async def clone(engine: Engine, vm_id: str, vm_name: str, snapshot_id: str, *, name: str, cluster_id: str,
                correlation_id: str) -> str:
    """A new VM named `name` from the snapshot (its disks copied, its configuration), in the cluster; waits until
    the new VM and its disks are no longer locked, and returns its id."""
    vms = lambda: engine.system.vms_service()

    def add() -> str:
        vm = vms().add(types.Vm(name=name, cluster=types.Cluster(id=cluster_id),
                                snapshots=[types.Snapshot(id=snapshot_id)]),
                       query={"correlation_id": correlation_id})
        return vm.id

    new_id = await engine.call(add, what=f"clone VM {name} from snapshot {snapshot_id} of VM {vm_name}",
                               policy=ENGINE_CREATE)
    await engine.wait_for(lambda: vms().vm_service(new_id).get(), lambda v: _enum(v.status) not in _BUSY,
                          what=f"VM {name} (cloned from snapshot {snapshot_id}) to be ready", deadline=CLONE_DEADLINE)

    def disks_ok() -> list[str]:
        system = engine.system
        atts = vms().vm_service(new_id).disk_attachments_service().list()
        return [_enum(system.disks_service().disk_service(a.disk.id).get().status) or "ok" for a in atts]

    states = await engine.wait_for(disks_ok, lambda s: all(x != "locked" for x in s),
                                   what=f"the disks of VM {name} to be copied", deadline=CLONE_DEADLINE)
    if any(x == "illegal" for x in states):
        raise EngineError(f"VM {name} cloned from snapshot {snapshot_id}: a disk copy is illegal on the engine")
    return new_id
