"""The backup requests a policy sends (pure).

A request's id is derived from its cause, uuid5 over a fixed namespace: the request for one VM in one slot of one
schedule has the same id whichever scheduler instance sends it, and however often, so the snapshotter can run it
once. The record's `requested_by` says why, for people and the audit trail: "policy gold: schedule nightly
2026-11-30T02:00Z", "policy gold: tag gold attached to web1", "policy gold: run by alice@host".
"""
from __future__ import annotations

import uuid
from datetime import datetime

from olvm_backup.commands.spec import BACKUP_PHASES, RESTORE_PHASES, spec_to_doc
from olvm_backup.commands.spec import CommandSpec as Spec
from schemas.records import BackupMode, BackupRequest, CommandSpec

from .model import Policy, Schedule
from .schedule import slot_text
from .selection import VmView

NAMESPACE = uuid.UUID("6f1c6a1e-19a0-4c55-9d1e-0b9a2f1c7e19")  # never change: ids already sent depend on it


def _name(thing: Policy | Schedule | str) -> str:
    return thing if isinstance(thing, str) else thing.name


def request_id(policy: Policy | str, schedule_or_cause: Schedule | str, slot_or_event: datetime | str,
               vm_id: str) -> str:
    """The id of the request for `vm_id` caused by one slot of a schedule (a datetime, taken to the minute in
    UTC) or by another cause (`schedule_or_cause` a word such as "tag" or "join", `slot_or_event` what tells
    this occurrence apart, e.g. the engine event's id). Same inputs, same id."""
    occurrence = slot_text(slot_or_event) if isinstance(slot_or_event, datetime) else str(slot_or_event)
    return str(uuid.uuid5(NAMESPACE, "\n".join((_name(policy), _name(schedule_or_cause), occurrence, vm_id))))


def schedule_cause(schedule: Schedule | str, slot: datetime) -> str:
    return f"schedule {_name(schedule)} {slot_text(slot)}"


def tag_cause(tag: str, vm_name: str, attached: bool = True) -> str:
    return f"tag {tag} {'attached to' if attached else 'detached from'} {vm_name}"


def join_cause(vm_name: str) -> str:
    return f"{vm_name} joined"


def run_cause(actor: str) -> str:
    return f"run by {actor}"


def requested_by(policy: Policy | str, cause: str) -> str:
    return f"policy {_name(policy)}: {cause}"


def backup_request(policy: Policy, vm: VmView, *, mode: BackupMode = "auto", cause: str, request_id: str,
                   now: float, requested_by: str | None = None) -> BackupRequest:
    """The request for one VM: its id is the caller's (`request_id(...)`), so the same cause gives the same id;
    the policy's disk patterns, quiesce and pre/post commands go with it; `requested_by` defaults to
    "policy NAME: CAUSE"."""
    return BackupRequest(
        request_id=request_id,
        vm=vm.vm_id,
        mode=mode,
        exclude_disks=list(policy.exclude_disks),
        quiesce=policy.quiesce,
        requested_by=requested_by or f"policy {policy.name}: {cause}",
        requested_at=now,
        policy=policy.name,
        strategy=policy.strategy,
        commands=backup_commands(policy, vm),
    )


def backup_commands(policy: Policy, vm: VmView) -> list[CommandSpec]:
    """The policy's pre/post commands of a backup's phases for this VM: the policy's, then the VM's own (by name,
    then by id)."""
    return [CommandSpec(**spec_to_doc(s)) for s in vm_commands(policy, vm.vm_id, vm.name, BACKUP_PHASES)]


def vm_commands(policy: Policy, vm_id: str, vm_name: str, phases: tuple[str, ...]) -> list[Spec]:
    specs = [*policy.commands, *policy.vm_commands.get(vm_name, []), *policy.vm_commands.get(vm_id, [])]
    return [s for s in specs if s.phase in phases]


def restore_commands(policies: list[Policy], vm_id: str, vm_name: str) -> list[Spec]:
    """The before-restore and after-restore commands of the backup policy that holds the VM a restore point is of
    (explicitly, by id or name, or assigned by its selection); none when no policy holds it."""
    for policy in policies:
        if policy.kind == "backup" and (vm_id in policy.assigned or {vm_id, vm_name} & set(policy.vms)):
            return vm_commands(policy, vm_id, vm_name, RESTORE_PHASES)
    return []
