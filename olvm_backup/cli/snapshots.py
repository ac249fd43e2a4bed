"""`olvm-backup snapshots VM list|create|remove|revert|clone`: a VM's snapshots on the engine, by hand.

Ours are the snapshots olvm-backup made (olvm_backup/snapshots/ownership.py: our description and its correlation
id recorded in the repository). The commands act on what the administrator names, with these guards:
- remove: only ours, unless --force (then any snapshot the admin names, said as such);
- revert: the engine needs the VM down; a running VM is refused unless --force, which powers it off first (a
  power-off, not a guest shutdown). The engine removes the snapshots taken after the one reverted to: listed first;
- clone: a running VM is refused unless --force; the snapshot does not change while the VM runs, so the clone is
  as consistent as the snapshot was, and the VM is left running.
Every engine step has a deadline (engine/snapshots.py, engine/snapshot_actions.py); every line names the VM.
"""
from __future__ import annotations

import contextlib
import json
import sys
import time
from typing import Any, Iterator

from ..config import Settings
from ..engine.connection import Engine, EngineError, EngineNotFound
from ..engine.provision import vm_exists
from ..engine.snapshot_actions import clone, power_off, revert
from ..engine.snapshots import SnapshotInfo, snapshot_volumes
from ..engine.snapshots import list_snapshots as engine_snapshots
from ..engine.vms import VmInfo, find_vm, vm_disks
from ..repository.sealedstore import open_sealed
from ..snapshots.ownership import new_correlation_id, owner_of
from ..policy.model import Policy
from ..snapshots.steps import SnapshotError, drop, forget_gone, keep_policy_snapshots, ours_and_others, record_of, take
from ..actors import actor


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) if ts else "-"


async def _say(text: str) -> None:
    print(text, flush=True)


@contextlib.contextmanager
def naming(vm: VmInfo, what: str) -> Iterator[None]:
    """An engine error in the block is said with the VM's name and what was being done."""
    try:
        yield
    except EngineError as e:
        raise SnapshotError(f"{what}: {e}", vm=vm.name) from e


def pick(snaps: list[SnapshotInfo], wanted: str, vm: VmInfo) -> SnapshotInfo:
    """The snapshot named by id, or by its exact description when only one has it."""
    by_id = [s for s in snaps if s.snapshot_id == wanted]
    if by_id:
        return by_id[0]
    by_text = [s for s in snaps if s.description == wanted]
    if len(by_text) == 1:
        return by_text[0]
    if by_text:
        raise SnapshotError(f"{len(by_text)} snapshots are described {wanted!r}: name one by its id", vm=vm.name)
    raise SnapshotError(f"no snapshot {wanted!r} (an id or a description; `olvm-backup snapshots {vm.name} list`)",
                        vm=vm.name)


async def snapshot_rows(engine: Engine, store, vm_name: str) -> tuple[VmInfo, list[dict[str, Any]]]:
    """The VM and each of its snapshots, oldest first: id, date, description, status, whether ours, its owner and
    the names of the disks it holds (what `snapshots list --json` prints, and the API answers)."""
    vm = await find_vm(engine, vm_name)
    snaps, known = await ours_and_others(engine, store, vm.vm_id)
    names = {d.disk_id: d.name for d in await vm_disks(engine, vm.vm_id)}
    rows: list[dict[str, Any]] = []
    for s in snaps:
        try:
            volumes = await snapshot_volumes(engine, vm.vm_id, s.snapshot_id)
        except EngineNotFound:  # removed while listed
            continue
        owner = owner_of(s.description, known)
        rows.append({"snapshot_id": s.snapshot_id, "date": s.date, "description": s.description,
                     "status": s.status, "ours": bool(owner) and owner != "backup", "owner": owner or "not ours",
                     "disks": sorted(names.get(d, d) for d in volumes)})
    return vm, rows


async def list_snapshots(settings: Settings, vm_name: str, as_json: bool = False) -> int:
    async with Engine(settings.engine) as engine, open_sealed(settings) as (store, _):
        vm, rows = await snapshot_rows(engine, store, vm_name)
    if as_json:
        print(json.dumps({"vm": vm.name, "vm_id": vm.vm_id, "snapshots": rows}, indent=1))
        return 0
    if not rows:
        print(f"VM {vm.name}: no snapshots")
        return 0
    print(f"VM {vm.name} ({vm.vm_id}, {vm.status}): {len(rows)} snapshot(s), oldest first")
    # ours: yes (recorded: remove takes it), backup (a snapshot backup keeps it for the next incremental), or no
    print(f"{'snapshot':<36}  {'taken (UTC)':<19}  {'status':<7} {'ours':<6} {'owner':<20} disks  description")
    for r in rows:
        ours = "yes" if r["ours"] else ("backup" if r["owner"] == "backup" else "no")
        print(f"{r['snapshot_id']:<36}  {_when(r['date']):<19}  {r['status']:<7} {ours:<6} "
              f"{r['owner']:<20} {','.join(r['disks']) or '-'}  {r['description']}")
    return 0


async def take_snapshot(engine: Engine, store, vm_name: str, description: str, quiesce: bool, who: str,
                        say=_say):
    """Take one of our snapshots of the VM (recorded in the repository): (the VM, what `take` answers)."""
    vm = await find_vm(engine, vm_name)
    purpose = f"by {who}" + (f": {description}" if description else "")
    with naming(vm, "the snapshot was not taken"):
        taken = await take(engine, store, vm, purpose=purpose, by=who, quiesce=quiesce, say=say)
    return vm, taken


async def create(settings: Settings, vm_name: str, description: str, quiesce: bool) -> int:
    async with Engine(settings.engine) as engine, open_sealed(settings) as (store, _):
        vm, taken = await take_snapshot(engine, store, vm_name, description, quiesce, actor())
    s = taken.snapshot
    print(f"VM {vm.name}: snapshot {s.snapshot_id} created ({s.description!r}, {taken.consistency})")
    return 0


async def remove_snapshot(engine: Engine, store, vm_name: str, wanted: str, force: bool,
                          say=_say) -> tuple[VmInfo, SnapshotInfo]:
    """Remove a snapshot (by id or exact description) and wait until its layer is merged: only ours, unless
    `force`. The VM and the snapshot removed."""
    vm = await find_vm(engine, vm_name)
    snaps, known = await ours_and_others(engine, store, vm.vm_id)
    snap = pick(snaps, wanted, vm)
    record = record_of(snap, known)
    if record is None and not force:
        why = owner_of(snap.description, known)
        what = ("it is the snapshot a snapshot backup keeps for the VM's next incremental" if why == "backup"
                else "it was not made by olvm-backup")
        raise SnapshotError(f"snapshot {snap.snapshot_id} ({snap.description!r}) is not removed: {what}. "
                            "Add --force to remove it anyway", vm=vm.name)
    if record is None:
        await say(f"VM {vm.name}: snapshot {snap.snapshot_id} ({snap.description!r}) was not made by olvm-backup; "
                  "removing it as asked (--force)")
    await say(f"VM {vm.name}: removing snapshot {snap.snapshot_id}; the engine merges its layer, this can take a "
              "while")
    with naming(vm, f"snapshot {snap.snapshot_id} was not removed"):
        await drop(engine, store, vm.vm_id, snap, record, force=force)
    return vm, snap


async def remove(settings: Settings, vm_name: str, wanted: str, force: bool) -> int:
    async with Engine(settings.engine) as engine, open_sealed(settings) as (store, _):
        vm, snap = await remove_snapshot(engine, store, vm_name, wanted, force)
    print(f"VM {vm.name}: snapshot {snap.snapshot_id} removed")
    return 0


async def _down_or_forced(engine: Engine, vm: VmInfo, force: bool, action: str) -> bool:
    """True when the VM was powered off here (revert --force)."""
    if vm.status == "down":
        return False
    if not force:
        how = ("power it off first, or add --force to have it powered off (a power-off, not a guest shutdown: what "
               "the guest has not written to its disks is lost)") if action == "revert" else \
              ("stop it first, or add --force to clone from the snapshot while the VM runs (the snapshot does not "
               "change: the clone is as consistent as the snapshot)")
        raise SnapshotError(f"VM is {vm.status}: {action} needs the VM down; {how}", vm=vm.name)
    if action != "revert":
        print(f"VM {vm.name} is {vm.status}: cloning from its snapshot while it runs (--force)")
        return False
    print(f"VM {vm.name} is {vm.status}: powering it off (--force)", flush=True)
    await power_off(engine, vm.vm_id, vm.name)
    print(f"VM {vm.name}: down")
    return True


async def revert_to(settings: Settings, vm_name: str, wanted: str, force: bool) -> int:
    who = actor()
    async with Engine(settings.engine) as engine, open_sealed(settings) as (store, _):
        vm = await find_vm(engine, vm_name)
        snaps, known = await ours_and_others(engine, store, vm.vm_id)
        snap = pick(snaps, wanted, vm)
        await _down_or_forced(engine, vm, force, "revert")
        later = [s for s in snaps if s.date > snap.date]
        if later:
            print(f"VM {vm.name}: the engine removes the {len(later)} snapshot(s) taken after it: "
                  + ", ".join(f"{s.snapshot_id} ({s.description!r})" for s in later))
        print(f"VM {vm.name}: reverting to snapshot {snap.snapshot_id} ({snap.description!r})", flush=True)
        with naming(vm, f"the revert to snapshot {snap.snapshot_id} failed"):
            await revert(engine, vm.vm_id, vm.name, snap.snapshot_id, correlation_id=new_correlation_id())
        after, known = await ours_and_others(engine, store, vm.vm_id)
        await forget_gone(store, vm.vm_id, after, known)
    print(f"VM {vm.name}: reverted to snapshot {snap.snapshot_id} by {who}; it is down (start it when you want)")
    return 0


async def clone_from(settings: Settings, vm_name: str, wanted: str, name: str, force: bool) -> int:
    async with Engine(settings.engine) as engine:
        vm = await find_vm(engine, vm_name)
        snap = pick(await engine_snapshots(engine, vm.vm_id), wanted, vm)
        if await vm_exists(engine, name):
            raise SnapshotError(f"a VM named {name!r} exists already: choose another --name", vm=vm.name)
        await _down_or_forced(engine, vm, force, "clone")
        cluster = vm.details.get("cluster_id")
        if not cluster:
            raise SnapshotError("the engine does not say which cluster the VM is in", vm=vm.name)
        print(f"VM {vm.name}: cloning snapshot {snap.snapshot_id} ({snap.description!r}) into a new VM {name}; "
              "its disks are copied, this can take a while", flush=True)
        with naming(vm, f"the clone of snapshot {snap.snapshot_id} into VM {name} failed"):
            new_id = await clone(engine, vm.vm_id, vm.name, snap.snapshot_id, name=name, cluster_id=cluster,
                                 correlation_id=new_correlation_id())
    print(f"VM {vm.name}: snapshot {snap.snapshot_id} cloned into VM {name} ({new_id}), down")
    return 0


async def run_snapshot_policy(settings: Settings, policy: Policy, vm_ids: list[str], who: str) -> int:
    """`policy run` of a hypervisor-snapshots policy: a snapshot of each VM it holds, then its retention over the
    snapshots it made, as at one of its slots (services/scheduler/snapshotting.py), one VM after another."""
    failed = 0
    async with Engine(settings.engine) as engine, open_sealed(settings) as (store, _):
        for vm_id in vm_ids:
            try:
                vm = await find_vm(engine, vm_id)
                taken = await take(engine, store, vm, purpose=f"policy {policy.name} run by {who}", by=who,
                                   policy=policy.name, quiesce=policy.quiesce, say=_say)
                print(f"VM {vm.name}: snapshot {taken.snapshot.snapshot_id} taken ({taken.consistency})", flush=True)
                kept = await keep_policy_snapshots(engine, store, vm, policy.name, policy.retention, say=_say)
                failed += bool(kept.left)
            except SnapshotError as e:
                failed += 1
                print(f"olvm-backup: {e}", file=sys.stderr)
            except EngineError as e:
                failed += 1
                print(f"olvm-backup: VM {vm_id}: {e}", file=sys.stderr)
    return 1 if failed else 0
