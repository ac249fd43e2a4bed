"""Policies in the object store, `policies/<name>` (JSON; the SealedStore seals them in an encrypted repository),
and every change to one published as a PolicyEvent on `policy.events` (who changed what: the audit trail).

The object is written first, then the event: an event never announces a change that is not stored. A policy is
checked in full before anything is written (`parse_policy` over its document, and a VM named explicitly in another
policy is refused), so a refused policy stores nothing and publishes nothing.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable, Protocol

from schemas.records import PolicyAction, PolicyEvent
from schemas.topics import POLICY_EVENTS

from ..errors import ObjectNotFound
from ..objectstore import ObjectStore
from .model import NAME, NAME_RULE, Policy, PolicyError, PolicyNotFound, changed_fields, parse_policy, policy_to_doc
from .selection import PolicyResult

log = logging.getLogger(__name__)

PREFIX = "policies/"
SCHEDULER = "scheduler"  # the actor of changes the selection makes by itself


class Publisher(Protocol):
    async def publish(self, topic: Any, record: Any, key: str | bytes | None = None) -> None: ...


def policy_key(name: str) -> str:
    if not NAME.match(name):
        raise PolicyError(f"{name!r} is not a valid name ({NAME_RULE})", policy=name, field="name")
    return PREFIX + name


def _decode(name: str, raw: bytes) -> Policy:
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise PolicyError(f"the stored object is not JSON ({e})", policy=name) from None
    return parse_policy(doc, name=name)


async def find_policy(store: ObjectStore, name: str) -> Policy | None:
    try:
        raw = await store.get(policy_key(name))
    except ObjectNotFound:
        return None
    return _decode(name, raw)


async def get_policy(store: ObjectStore, name: str) -> Policy:
    policy = await find_policy(store, name)
    if policy is None:
        raise PolicyNotFound(name)
    return policy


async def list_policies(store: ObjectStore, problems: list[PolicyError] | None = None) -> list[Policy]:
    """Every policy, by name. One that does not read (a newer major, a damaged object) is left out and logged,
    and added to `problems` when given: one bad policy does not stop the others."""
    policies = []
    async for info in store.list(PREFIX):
        name = info.key[len(PREFIX):]
        try:
            policies.append(_decode(name, await store.get(info.key)))
        except (PolicyError, ObjectNotFound) as e:
            if isinstance(e, ObjectNotFound):
                continue  # deleted while listed
            log.warning("%s", e)
            if problems is not None:
                problems.append(e)
    return sorted(policies, key=lambda p: p.name)


def check_explicit(policy: Policy, others: list[Policy]) -> None:
    """A VM belongs to at most one policy of each kind (one backup policy, one hypervisor-snapshots policy): refuse
    one that `policy` names explicitly and another policy of its kind does too."""
    for i, vm in enumerate(policy.vms):
        for other in others:
            if other.name != policy.name and other.kind == policy.kind and vm in other.vms:
                what = "backup" if policy.kind == "backup" else policy.kind
                raise PolicyError(f"VM {vm!r} is already assigned to policy {other.name} (a VM belongs to at most "
                                  f"one {what} policy: unassign it there first)", policy=policy.name,
                                  field=f"vms[{i}]")


async def publish_event(bus: Publisher, policy: str, action: PolicyAction, actor: str, detail: dict | None = None,
                        message: str = "", now: Callable[[], float] = time.time) -> PolicyEvent:
    event = PolicyEvent(policy=policy, action=action, actor=actor, detail=detail or {}, message=message, at=now())
    await bus.publish(POLICY_EVENTS, event, key=policy)
    return event


async def save_policy(store: ObjectStore, bus: Publisher, policy: Policy, actor: str, change: str = "", *,
                      action: PolicyAction | None = None, detail: dict | None = None,
                      now: Callable[[], float] = time.time) -> PolicyEvent | None:
    """Check, store and announce a policy. `action` defaults to created or updated (`detail.fields`: the fields
    that differ); `change` is the message, in words. Nothing stored, nothing published, when a check fails; an
    update that changes nothing publishes nothing (None)."""
    doc = policy_to_doc(policy)
    checked = parse_policy(json.loads(json.dumps(doc)), name=policy.name)  # a Policy built in code is checked too
    others = [p for p in await list_policies(store) if p.name != checked.name]
    check_explicit(checked, others)
    old = await find_policy(store, checked.name)
    fields = changed_fields(old, checked) if old is not None else list(doc)
    if old is not None and not fields:
        return None
    await store.put(policy_key(checked.name), json.dumps(doc, indent=1, sort_keys=False).encode())
    if action is None:
        action = "created" if old is None else "updated"
    details = {"fields": [f for f in fields if f != "v"]} if old is not None else {}
    details.update(detail or {})
    message = change or f"{action} by {actor}"
    return await publish_event(bus, checked.name, action, actor, details, message, now)


async def delete_policy(store: ObjectStore, bus: Publisher, name: str, actor: str,
                        now: Callable[[], float] = time.time) -> PolicyEvent:
    """Delete a policy; the event keeps its last document, so the audit trail can say what it was."""
    old = await get_policy(store, name)
    await store.delete(policy_key(name))
    return await publish_event(bus, name, "deleted", actor, {"document": policy_to_doc(old)},
                               f"deleted by {actor}", now)


async def apply_result(store: ObjectStore, bus: Publisher, policy: Policy, result: PolicyResult,
                       actor: str = SCHEDULER, *, reported: set[tuple[str, str, str]] | None = None,
                       now: Callable[[], float] = time.time) -> Policy:
    """Store what an evaluation (selection.evaluate) changed for one policy: its new `assigned`, and an event per
    VM that joined or left; an event per conflict not in `reported` (policy, VM id, holder), which it then holds,
    so a conflict that lasts is reported once per scheduler run. Returns the policy as stored."""
    from dataclasses import replace

    updated = policy
    if result.changed:
        updated = replace(policy, assigned=list(result.assigned))
        await save_policy(store, bus, updated, actor, f"assigned VMs now {len(result.assigned)}",
                          detail={"joined": [vm.vm_id for vm in result.joined], "left": list(result.left)},
                          now=now)
        for vm in result.joined:
            await publish_event(bus, policy.name, "vm_joined", actor, {"vm_id": vm.vm_id, "vm": vm.name},
                                f"VM {vm.name} joined", now)
        for vm_id in result.left:
            await publish_event(bus, policy.name, "vm_left", actor, {"vm_id": vm_id}, f"VM {vm_id} left", now)
    for conflict in result.conflicts:
        key = (conflict.policy, conflict.vm.vm_id, conflict.held_by)
        if reported is not None:
            if key in reported:
                continue
            reported.add(key)
        await publish_event(bus, policy.name, "conflict", actor,
                            {"vm_id": conflict.vm.vm_id, "vm": conflict.vm.name, "held_by": conflict.held_by,
                             "how": conflict.how}, conflict.message(), now)
    return updated
