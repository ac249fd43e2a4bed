"""Each VM's protection state (pure): the policy that holds it, its newest restore point, and how its last backup
ended. The engine's inventory, the policies' selection, the catalog and the audit trail in; one dict per VM out."""
from __future__ import annotations

from typing import Any, Iterable

from olvm_backup.audit.history import Row
from olvm_backup.policy.model import Policy
from olvm_backup.policy.selection import VmView, evaluate


def protection(vms: list[VmView], policies: list[Policy], manifests: Iterable[Any],
               history: list[Row]) -> list[dict[str, Any]]:
    """`history`: audit rows newest first (audit.history.rows)."""
    evaluation = evaluate(policies, vms)
    held: dict[str, dict[str, str]] = {}  # vm id -> policy kind -> policy
    for policy in policies:
        for vm in evaluation[policy.name].holds:
            held.setdefault(vm.vm_id, {}).setdefault(policy.kind, policy.name)
    newest: dict[str, Any] = {}
    for m in manifests:  # oldest first: the last one seen is the newest
        newest[m.vm_id] = m
    last: dict[str, Row] = {}
    for row in history:
        if row.topic == "backup.events" and row.outcome and row.what == f"backup {row.outcome}":
            for name in row.vms:
                last.setdefault(name, row)
    out = []
    for vm in vms:
        policies_of = held.get(vm.vm_id, {})
        point = newest.get(vm.vm_id)
        result = last.get(vm.vm_id) or last.get(vm.name)
        out.append({
            "id": vm.vm_id, "name": vm.name, "cluster": vm.cluster, "tags": sorted(vm.tags),
            "policy": policies_of.get("backup"), "snapshot_policy": policies_of.get("hypervisor-snapshots"),
            "protected": "backup" in policies_of or point is not None,
            "last_restore_point": None if point is None else {
                "backup_id": point.backup_id, "completed_at": point.completed_at, "mode": point.mode,
                "strategy": point.strategy, "consistency": point.consistency or None},
            "last_result": None if result is None else {
                "outcome": result.outcome, "at": result.at, "message": result.message,
                "request_id": result.request_id, "backup_id": result.backup_id or None},
        })
    return out
