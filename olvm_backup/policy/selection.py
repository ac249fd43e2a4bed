"""Which VMs each policy holds now, given the engine's inventory (pure).

`evaluate(policies, vms)` takes the COMPLETE inventory (a VM absent from it is taken as gone from the engine: it
leaves every policy's `assigned`) and answers, per policy, the VMs it holds (explicit ones plus those its
assignment mode assigns), the new `assigned` list to store, the VMs that joined and left compared with the stored
`assigned`, and the conflicts.

A VM belongs to at most one policy of each kind (`kind`: one backup policy and one hypervisor-snapshots policy;
each kind is evaluated apart). Conflicts are reported, never resolved silently; the rule, in this order:
1. explicit assignment wins: a VM named in a policy's `vms` belongs to it (the store refuses a VM named explicitly
   in two policies; should two still name it, by id in one and by name in the other, the first policy by name
   keeps it and the other gets a conflict);
2. a VM already held keeps its policy: one in a policy's stored `assigned` (and still selected, for
   assign_and_remove) stays there, and another policy that selects it gets a conflict, not the VM;
3. a VM no policy holds yet that several policies select goes to the first of them by name; each of the others
   gets a conflict naming it.
A policy whose assignment is `disabled` holds only its explicit VMs and selects nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Literal

from .model import Policy


@dataclass(frozen=True)
class VmView:
    """A VM as the selection sees it. `cluster`: the cluster's name (None if the engine did not say)."""

    vm_id: str
    name: str
    cluster: str | None = None
    tags: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Conflict:
    """`vm` is selected by `policy` (or named in its `vms`) but held by `held_by`."""

    vm: VmView
    policy: str
    held_by: str
    how: Literal["explicit", "selection"]  # how `policy` wanted it

    def message(self) -> str:
        wanted = "names it explicitly" if self.how == "explicit" else "selects it"
        return (f"VM {self.vm.name} ({self.vm.vm_id}) is held by policy {self.held_by}; policy {self.policy} "
                f"{wanted} too and does not get it")


@dataclass
class PolicyResult:
    policy: str
    holds: list[VmView] = field(default_factory=list)  # what it backs up now: explicit + assigned, by name
    explicit: list[VmView] = field(default_factory=list)
    assigned: list[str] = field(default_factory=list)  # the new `assigned` (VM ids, sorted), to store
    joined: list[VmView] = field(default_factory=list)  # in the new `assigned`, not in the stored one
    left: list[str] = field(default_factory=list)  # VM ids in the stored `assigned`, not in the new one
    missing: list[str] = field(default_factory=list)  # explicit `vms` entries no VM of the inventory answers to
    conflicts: list[Conflict] = field(default_factory=list)
    previous: list[str] = field(default_factory=list)  # the stored `assigned`

    @property
    def changed(self) -> bool:
        """The `assigned` list to store differs from the stored one."""
        return set(self.assigned) != set(self.previous)


@dataclass
class Evaluation:
    results: dict[str, PolicyResult]  # by policy name
    owner: dict[str, str]  # VM id -> the policy holding it

    @property
    def conflicts(self) -> list[Conflict]:
        return [c for r in self.results.values() for c in r.conflicts]

    def __getitem__(self, policy: str) -> PolicyResult:
        return self.results[policy]


def matches(policy: Policy, vm: VmView) -> bool:
    """The policy's rules select the VM (whatever its assignment mode, and not counting explicit VMs): an include
    rule matches, no exclude rule does, and the VM runs in one of `clusters` when the policy names any."""
    selection = policy.selection
    if selection.clusters and vm.cluster not in selection.clusters:
        return False
    if not any(rule.matches(vm.name, vm.tags) for rule in selection.include):
        return False
    return not any(rule.matches(vm.name, vm.tags) for rule in selection.exclude)


def resolve(entries: Iterable[str], vms: Iterable[VmView]) -> tuple[list[VmView], list[str]]:
    """The VMs explicit entries (ids or names) name, and the entries no VM answers to. An id wins over a name."""
    vms = list(vms)
    by_id = {vm.vm_id: vm for vm in vms}
    by_name = {vm.name: vm for vm in vms}
    found: list[VmView] = []
    missing: list[str] = []
    for entry in entries:
        vm = by_id.get(entry) or by_name.get(entry)
        if vm is None:
            missing.append(entry)
        elif vm not in found:
            found.append(vm)
    return found, missing


def evaluate(policies: Iterable[Policy], vms: Iterable[VmView]) -> Evaluation:
    """See the module's docstring for the rule, applied to each kind of policy apart (a VM may be in one backup
    policy and in one hypervisor-snapshots policy). Deterministic: policies are taken by name, VMs by name then id.
    `owner` names a VM's backup policy, or its snapshot policy when it has no backup policy."""
    policies, vms = list(policies), list(vms)
    kinds = sorted({p.kind for p in policies}, key=lambda k: k == "backup")  # backup last: its owner wins
    if len(kinds) <= 1:
        return _evaluate(policies, vms)
    results: dict[str, PolicyResult] = {}
    owner: dict[str, str] = {}
    for kind in kinds:
        part = _evaluate([p for p in policies if p.kind == kind], vms)
        results.update(part.results)
        owner.update(part.owner)
    return Evaluation(results=dict(sorted(results.items())), owner=owner)


def _evaluate(policies: Iterable[Policy], vms: Iterable[VmView]) -> Evaluation:
    policies = sorted(policies, key=lambda p: p.name)
    inventory = sorted(vms, key=lambda vm: (vm.name, vm.vm_id))
    by_id = {vm.vm_id: vm for vm in inventory}
    results = {p.name: PolicyResult(policy=p.name, previous=list(p.assigned)) for p in policies}
    owner: dict[str, str] = {}
    selected = {p.name: [vm for vm in inventory if matches(p, vm)] if p.selects else [] for p in policies}
    new_assigned: dict[str, set[str]] = {p.name: set() for p in policies}

    # 1. explicit VMs
    for p in policies:
        result = results[p.name]
        found, result.missing = resolve(p.vms, inventory)
        for vm in found:
            held_by = owner.get(vm.vm_id)
            if held_by is None:
                owner[vm.vm_id] = p.name
                result.explicit.append(vm)
            elif held_by != p.name:
                result.conflicts.append(Conflict(vm, p.name, held_by, "explicit"))
    # 2. VMs already assigned keep their policy
    for p in policies:
        if not p.selects:
            continue
        now = {vm.vm_id for vm in selected[p.name]}
        for vm_id in p.assigned:
            vm = by_id.get(vm_id)
            if vm is None or (p.assignment == "assign_and_remove" and vm_id not in now):
                continue  # gone from the engine, or no longer selected: it leaves
            held_by = owner.get(vm_id)
            if held_by is None:
                owner[vm_id] = p.name
                new_assigned[p.name].add(vm_id)
            elif held_by != p.name:
                results[p.name].conflicts.append(Conflict(vm, p.name, held_by, "selection"))
    # 3. newly selected VMs
    for p in policies:
        told = {c.vm.vm_id for c in results[p.name].conflicts}
        for vm in selected[p.name]:
            held_by = owner.get(vm.vm_id)
            if held_by is None:
                owner[vm.vm_id] = p.name
                new_assigned[p.name].add(vm.vm_id)
            elif held_by != p.name and vm.vm_id not in told:
                results[p.name].conflicts.append(Conflict(vm, p.name, held_by, "selection"))

    for p in policies:
        result = results[p.name]
        assigned = new_assigned[p.name]
        result.assigned = sorted(assigned)
        previous = set(p.assigned)
        result.joined = [vm for vm in inventory if vm.vm_id in assigned and vm.vm_id not in previous]
        result.left = [vm_id for vm_id in p.assigned if vm_id not in assigned]
        held = {vm.vm_id for vm in result.explicit} | assigned
        result.holds = [vm for vm in inventory if vm.vm_id in held]
    return Evaluation(results=results, owner=owner)
