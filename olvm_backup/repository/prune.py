"""Prune: take out of the catalog the restore points retention rules no longer keep (their data goes with gc).

Two steps, so what would be removed can be shown before anything is (`--dry-run` is the first step alone):
`plan_prune` reads the catalog and the holds and asks retention.decide, per VM, what stays and why; `execute`
forgets the removals one by one (catalog.forget: the manifest, then the OVF).

Deleting is where backup products lose data, hence:
- a VM for which no rules are given is left alone (no rules is never "keep nothing");
- retention.decide keeps the newest restore point of each VM, the protected ones and those in use;
- just before each forget the holds are read again: a restore started since the plan keeps its restore point;
- a restore point under S3 Object Lock is skipped and reported with its lock, never forced;
- any other failure stops the run at once, saying what was removed before it; a kept restore point is never touched.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from ..errors import BackupError, ObjectLocked
from ..format.manifest import Manifest
from ..objectstore import ObjectStore
from ..retention import Decision, Point, Rules, decide
from . import catalog, holds


class PruneError(BackupError):
    template = "prune: {reason}"


@dataclass
class VmPlan:
    vm_id: str
    vm_name: str
    rules: Rules
    decisions: list[Decision]          # newest first, as retention.decide gives them
    manifests: dict[str, Manifest]     # by backup id

    @property
    def removals(self) -> list[Decision]:
        return [d for d in self.decisions if not d.keep]


@dataclass
class PrunePlan:
    vms: list[VmPlan] = field(default_factory=list)
    unruled: list[str] = field(default_factory=list)  # VMs with restore points and no rules: left alone
    planned_at: float = 0.0

    @property
    def removals(self) -> int:
        return sum(len(v.removals) for v in self.vms)


@dataclass
class Removed:
    backup_id: str
    vm_id: str
    vm_name: str
    rules: str       # the rules that no longer keep it (Rules.describe)


@dataclass
class PruneReport:
    removed: list[Removed] = field(default_factory=list)
    locked: dict[str, str] = field(default_factory=dict)   # backup id -> "locked until ... (mode)"
    held: dict[str, str] = field(default_factory=dict)     # backup id -> "protected" / "in use": held since the plan


async def plan_prune(store: ObjectStore, rules_for_vm: Callable[[str], Rules | None], vms: set[str] | None = None,
                     now: float | None = None) -> PrunePlan:
    """What the rules keep and remove, per VM (`vms`: ids or names; None: every VM in the catalog). `rules_for_vm`
    is asked with the VM's id; it answers None for a VM whose restore points are not to be pruned."""
    now = time.time() if now is None else now
    by_vm: dict[str, list[Manifest]] = {}
    for manifest in await catalog.list_manifests(store):
        if vms is None or manifest.vm_id in vms or manifest.vm_name in vms:
            by_vm.setdefault(manifest.vm_id, []).append(manifest)
    protected = await holds.protected_ids(store)
    in_use = frozenset(await holds.in_use_ids(store, now))
    plan = PrunePlan(planned_at=now)
    for vm_id, manifests in sorted(by_vm.items(), key=lambda kv: (kv[1][-1].vm_name, kv[0])):
        rules = rules_for_vm(vm_id)
        if rules is None:
            plan.unruled.append(vm_id)
            continue
        points = [Point(m.backup_id, m.completed_at, m.backup_id in protected) for m in manifests]
        plan.vms.append(VmPlan(vm_id, manifests[-1].vm_name, rules, decide(points, rules, in_use=in_use),
                               {m.backup_id: m for m in manifests}))
    return plan


async def _held_now(store: ObjectStore, backup_id: str) -> str:
    """'protected' or 'in use' when a hold appeared since the plan, else ''."""
    if backup_id in await holds.protected_ids(store):
        return "protected"
    if backup_id in await holds.in_use_ids(store):
        return "in use"
    return ""


async def execute(store: ObjectStore, plan: PrunePlan, *,
                  on_removed: Callable[[Removed], Awaitable[None]] | None = None) -> PruneReport:
    """Forget every restore point the plan removes, VM by VM, oldest first. `on_removed` is awaited after each
    (the audit event); its failure stops the run like a store's."""
    for vm in plan.vms:  # retention.decide never removes the newest; a plan built or edited by hand might
        newest = max(vm.decisions, key=lambda d: d.point.completed_at, default=None)
        if newest is not None and not newest.keep:
            raise PruneError(f"refusing to prune: the plan removes restore point {newest.point.backup_id} of "
                             f"{vm.vm_name}, the newest of its VM (the base of its next incremental); nothing was "
                             "removed")
    report = PruneReport()
    for vm in plan.vms:
        for decision in reversed(vm.removals):
            backup_id = decision.point.backup_id
            held = await _held_now(store, backup_id)
            if held:
                report.held[backup_id] = held
                continue
            try:
                await catalog.forget(store, vm.manifests[backup_id])
            except ObjectLocked as e:
                report.locked[backup_id] = str(e)
                continue
            except Exception as e:
                done = ", ".join(r.backup_id for r in report.removed) or "none"
                raise PruneError(f"stopped at restore point {backup_id} of {vm.vm_name}: {e} (removed before it: "
                                 f"{done}); nothing else was removed, run prune again once this is fixed") from e
            removed = Removed(backup_id, vm.vm_id, vm.vm_name, vm.rules.describe())
            report.removed.append(removed)
            if on_removed is not None:
                await on_removed(removed)
    await holds.clear_lapsed(store)  # markers of processes killed long ago: they hold nothing any more
    return report
