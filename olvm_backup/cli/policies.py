"""`olvm-backup policy ...`: create, list, show, edit, delete, assign, unassign and run backup policies.

Policies live in the object store (policy/store.py); every change is published on `policy.events` with who made
it (`user@host`). `show` asks the engine which VMs the policy selects now, when an engine is configured.
"""
from __future__ import annotations

import contextlib
import sys
import time
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncContextManager, AsyncIterator, Callable
from zoneinfo import ZoneInfo

import yaml

from schemas.topics import BACKUP_REQUESTS

from ..actors import actor
from ..config import Settings
from ..policy.model import Policy, PolicyError, parse_policy, policy_to_doc
from ..policy.requests import backup_request, request_id, run_cause
from ..policy.schedule import next_slot
from ..policy.selection import Evaluation, VmView, evaluate
from ..policy.store import delete_policy, find_policy, get_policy, list_policies, save_policy
from ..repository.sealedstore import open_sealed


@contextlib.asynccontextmanager
async def open_repository(settings: Settings) -> AsyncIterator[Any]:
    async with open_sealed(settings) as (store, _):
        yield store


@contextlib.asynccontextmanager
async def open_bus(settings: Settings) -> AsyncIterator[Any]:
    from ..kafka import Bus
    from ..kafka.probe import require_broker

    await require_broker(settings.kafka, "a policy change is published on policy.events")
    async with Bus(settings.kafka, client_id="olvm-backup-cli") as bus:
        yield bus


async def engine_vms(settings: Settings) -> list[VmView]:
    from ..engine import Engine
    from ..engine.inventory import list_vms

    async with Engine(settings.engine) as engine:
        return await list_vms(engine)


def read_document(path: str, name: str) -> dict:
    """The policy document in a YAML (or JSON) file, `-` for standard input."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as e:
        raise PolicyError(f"cannot read {path}: {e.strerror or e}", policy=name) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PolicyError(f"{path} is not YAML ({e})", policy=name) from None
    return {} if doc is None else doc


BusOpener = Callable[[], AsyncContextManager[Any]]


async def create_policy(store, open_bus_: BusOpener, name: str, doc: Any, who: str) -> Policy:
    """Check, store and announce a new policy (the bus is opened only once the checks pass)."""
    policy = parse_policy(doc, name=name)
    if await find_policy(store, name) is not None:
        raise PolicyError("exists already (`olvm-backup policy edit` changes it)", policy=name)
    async with open_bus_() as bus:
        await save_policy(store, bus, policy, who)
    return policy


async def edit_policy(store, open_bus_: BusOpener, name: str, doc: Any, who: str):
    """Replace a policy by `doc`; the VMs its selection assigned are kept unless `doc` says `assigned`. The event
    published, or None when nothing changed."""
    policy = parse_policy(doc, name=name)
    old = await get_policy(store, name)
    if not (isinstance(doc, dict) and "assigned" in doc):
        policy = replace(policy, assigned=old.assigned)  # the scheduler's state, not the admin's
    async with open_bus_() as bus:
        return await save_policy(store, bus, policy, who)


async def delete_named(store, open_bus_: BusOpener, name: str, who: str) -> None:
    await get_policy(store, name)
    async with open_bus_() as bus:
        await delete_policy(store, bus, name, who)


async def create(settings: Settings, name: str, path: str) -> int:
    doc = read_document(path, name)
    parse_policy(doc, name=name)  # checked before anything is opened
    async with open_repository(settings) as store:
        await create_policy(store, lambda: open_bus(settings), name, doc, actor())
    print(f"policy {name} created")
    return 0


async def edit(settings: Settings, name: str, path: str) -> int:
    doc = read_document(path, name)
    parse_policy(doc, name=name)
    async with open_repository(settings) as store:
        event = await edit_policy(store, lambda: open_bus(settings), name, doc, actor())
    if event is None:
        print(f"policy {name}: nothing changed")
    else:
        print(f"policy {name} updated: {', '.join(event.detail.get('fields', []))}")
    return 0


async def delete(settings: Settings, name: str) -> int:
    async with open_repository(settings) as store:
        await delete_named(store, lambda: open_bus(settings), name, actor())
    print(f"policy {name} deleted")
    return 0


async def assign(settings: Settings, name: str, vm: str) -> int:
    async with open_repository(settings) as store:
        policy = await get_policy(store, name)
        if vm in policy.vms:
            print(f"policy {name}: {vm} is assigned already")
            return 0
        async with open_bus(settings) as bus:
            await save_policy(store, bus, replace(policy, vms=[*policy.vms, vm]), actor(), f"{vm} assigned",
                              action="assigned", detail={"vm": vm})
    print(f"policy {name}: {vm} assigned")
    return 0


async def unassign(settings: Settings, name: str, vm: str) -> int:
    async with open_repository(settings) as store:
        policy = await get_policy(store, name)
        if vm not in policy.vms:
            why = (" (its selection assigned it: change the rules, or the VM's tags)" if vm in policy.assigned
                   else "")
            raise PolicyError(f"{vm!r} is not assigned explicitly{why}", policy=name, field="vms")
        async with open_bus(settings) as bus:
            await save_policy(store, bus, replace(policy, vms=[v for v in policy.vms if v != vm]), actor(),
                              f"{vm} unassigned", action="unassigned", detail={"vm": vm})
    print(f"policy {name}: {vm} unassigned")
    return 0


def next_runs(policy: Policy, now: datetime) -> list[tuple[str, datetime, datetime]]:
    """(schedule, next run in its zone, in UTC)."""
    out = []
    for schedule in policy.schedules:
        slot = next_slot(schedule, now)
        out.append((schedule.name, slot.astimezone(ZoneInfo(schedule.timezone)), slot))
    return out


async def list_all(settings: Settings) -> int:
    async with open_repository(settings) as store:
        problems: list[PolicyError] = []
        policies = await list_policies(store, problems)
    for problem in problems:
        print(f"olvm-backup: {problem}", file=sys.stderr)
    if not policies:
        print("no policies", file=sys.stderr)
        return 1 if problems else 0
    now = datetime.now(timezone.utc)
    print(f"{'policy':<20} {'assignment':<17} {'explicit':>8} {'assigned':>8}  {'schedules':<24} next run (UTC)")
    for p in policies:
        runs = next_runs(p, now)
        first = min((utc for _, _, utc in runs), default=None)
        print(f"{p.name:<20} {p.assignment:<17} {len(p.vms):>8} {len(p.assigned):>8}  "
              f"{','.join(s.name for s in p.schedules) or '-':<24} "
              f"{first.strftime('%Y-%m-%d %H:%M') if first else '-'}")
    return 1 if problems else 0


def _show_vms(policy: Policy, evaluation: Evaluation) -> None:
    result = evaluation[policy.name]
    explicit = {vm.vm_id for vm in result.explicit}
    print(f"VMs it holds now: {len(result.holds)}")
    for vm in result.holds:
        how = "explicit" if vm.vm_id in explicit else ("joins now" if vm in result.joined else "assigned")
        tags = ",".join(sorted(vm.tags)) or "-"
        print(f"  {vm.name:<24} {vm.vm_id:<36}  {vm.cluster or '-':<12} {how:<9}  tags {tags}")
    for vm_id in result.left:
        print(f"  leaves: {vm_id} (no longer selected, or gone from the engine)")
    for entry in result.missing:
        print(f"  missing: {entry} (assigned explicitly; no VM of the engine has this name or id)")
    for conflict in result.conflicts:
        print(f"  conflict: {conflict.message()}")
    for other in evaluation.results.values():
        for conflict in other.conflicts:
            if conflict.held_by == policy.name:
                print(f"  conflict: {conflict.message()}")


async def show(settings: Settings, name: str) -> int:
    async with open_repository(settings) as store:
        policies = await list_policies(store)
        policy = await get_policy(store, name)
    doc = policy_to_doc(policy)
    doc.pop("v")
    assigned = doc.pop("assigned")
    print(yaml.safe_dump(doc, sort_keys=False, default_flow_style=None).rstrip())
    print(f"assigned by the selection: {len(assigned)} VM(s)")
    if not settings.engine.url:
        print("VMs it selects now: engine not configured (OLVM_ENGINE_URL)")
    else:
        from ..engine import EngineError

        try:
            vms = await engine_vms(settings)
        except EngineError as e:
            print(f"VMs it selects now: the engine does not answer ({e})")
        else:
            _show_vms(policy, evaluate([p for p in policies if p.name != name] + [policy], vms))
    now = datetime.now(timezone.utc)
    if not policy.schedules:
        print("next runs: none (no schedule)")
    for schedule_name, local, utc in next_runs(policy, now):
        schedule = policy.schedule(schedule_name)
        print(f"next run of {schedule_name} ({schedule.cron}, {schedule.mode}): "
              f"{local.strftime('%Y-%m-%d %H:%M %Z')} ({utc.strftime('%Y-%m-%d %H:%M')} UTC)")
    return 0


async def holds_now(settings: Settings, store, name: str,
                    vms: list[VmView] | None = None) -> tuple[Policy, list[VmView]]:
    """The policy and the VMs it holds now: by the engine's inventory (`vms`, or asked for here) when an engine is
    configured; without one, the VMs it names (explicit and assigned by id)."""
    policies = await list_policies(store)
    policy = await get_policy(store, name)
    if settings.engine.url:
        vms = vms if vms is not None else await engine_vms(settings)
        return policy, evaluate([p for p in policies if p.name != name] + [policy], vms)[name].holds
    return policy, [VmView(vm_id=v, name=v) for v in dict.fromkeys([*policy.vms, *policy.assigned])]


async def request_run(bus, policy: Policy, holds: list[VmView], mode: str | None, who: str) -> list[tuple[VmView, str]]:
    """A backup request for each VM held, as one run of the policy: (VM, request id) each."""
    occurrence = uuid.uuid4().hex  # each run is its own cause
    cause = run_cause(who)
    out = []
    for vm in holds:
        rid = request_id(policy, "run", occurrence, vm.vm_id)
        request = backup_request(policy, vm, mode=mode or "auto", cause=cause, request_id=rid, now=time.time())
        await bus.publish(BACKUP_REQUESTS, request, key=vm.vm_id)
        out.append((vm, rid))
    return out


async def run(settings: Settings, name: str, mode: str | None) -> int:
    """A backup request for each VM the policy holds now. Without an engine, the VMs it names (explicit and
    assigned by id) are what it holds."""
    who = actor()
    async with open_repository(settings) as store:
        policy, holds = await holds_now(settings, store, name)
    if not holds:
        print(f"policy {name} holds no VM: nothing to run", file=sys.stderr)
        return 1
    if policy.kind == "hypervisor-snapshots":  # no backup: its snapshots are taken (and kept) here and now
        from .snapshots import run_snapshot_policy

        return await run_snapshot_policy(settings, policy, [vm.vm_id for vm in holds], who)
    async with open_bus(settings) as bus:
        for vm, rid in await request_run(bus, policy, holds, mode, who):
            print(f"{vm.name:<24} requested: {rid}")
    return 0
