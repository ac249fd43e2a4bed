"""Policies in the object store and their change events: saved policies read back (sealed in an encrypted
repository), a refused policy stores and publishes nothing, every change is a PolicyEvent with actor and detail."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from olvm_backup.crypto.sealing import RepoKey, Sealer
from olvm_backup.objectstore.memory import MemoryStore
from olvm_backup.policy.model import PolicyError, PolicyNotFound, Schedule, parse_policy
from olvm_backup.policy.selection import VmView, evaluate
from olvm_backup.policy.store import (
    apply_result, delete_policy, find_policy, get_policy, list_policies, save_policy,
)
from olvm_backup.repository.sealedstore import sealed
from schemas.records import PolicyEvent
from schemas.topics import POLICY_EVENTS
from tests.twins import MemoryBus

GOLD = parse_policy({"name": "gold", "selection": {"include": [{"tag": "gold"}]}, "assignment": "assign_and_remove",
                     "schedules": [{"name": "nightly", "cron": "0 2 * * *", "mode": "incremental"}]})
ALICE = "alice@host"


def clock():
    return 1800000000.0


def events(bus: MemoryBus) -> list[PolicyEvent]:
    return bus.records(POLICY_EVENTS)


async def keys(store) -> list[str]:
    return [info.key async for info in store.list("")]


async def test_saved_policies_read_back_and_are_listed_by_name():
    store, bus = MemoryStore(), MemoryBus()
    silver = parse_policy({"name": "silver", "vms": ["db1"]})
    await save_policy(store, bus, GOLD, ALICE, now=clock)
    await save_policy(store, bus, silver, ALICE, now=clock)
    assert await get_policy(store, "gold") == GOLD
    assert [p.name for p in await list_policies(store)] == ["gold", "silver"]
    assert await keys(store) == ["policies/gold", "policies/silver"]
    assert json.loads(await store.get("policies/gold"))["v"] == [1, 2]
    assert await find_policy(store, "bronze") is None
    with pytest.raises(PolicyNotFound, match="policy bronze: no such policy"):
        await get_policy(store, "bronze")


async def test_every_change_is_an_event_with_actor_and_detail():
    store, bus = MemoryStore(), MemoryBus()
    created = await save_policy(store, bus, GOLD, ALICE, now=clock)
    assert (created.action, created.actor, created.policy, created.at) == ("created", ALICE, "gold", clock())
    edited = replace(GOLD, quiesce=False, schedules=[Schedule("nightly", "0 3 * * *")])
    updated = await save_policy(store, bus, edited, "bob@laptop", "moved to 03:00")
    assert (updated.action, updated.actor, updated.message) == ("updated", "bob@laptop", "moved to 03:00")
    assert updated.detail == {"fields": ["schedules", "quiesce"]}
    assert await save_policy(store, bus, edited, "bob@laptop") is None  # nothing changed: no event
    assigned = await save_policy(store, bus, replace(edited, vms=["web9"]), ALICE, action="assigned",
                                 detail={"vm": "web9"})
    assert assigned.action == "assigned" and assigned.detail == {"fields": ["vms"], "vm": "web9"}
    deleted = await delete_policy(store, bus, "gold", ALICE)
    assert deleted.action == "deleted" and deleted.detail["document"]["vms"] == ["web9"]
    assert await keys(store) == []
    published = events(bus)
    assert [e.action for e in published] == ["created", "updated", "assigned", "deleted"]
    assert [s.key for s in bus.published[bus.topic_name(POLICY_EVENTS)]] == [b"gold"] * 4
    with pytest.raises(PolicyNotFound):
        await delete_policy(store, bus, "gold", ALICE)
    assert len(events(bus)) == 4


async def test_a_malformed_policy_stores_and_publishes_nothing():
    store, bus = MemoryStore(), MemoryBus()
    bad = replace(GOLD, schedules=[Schedule("nightly", "not cron")])
    with pytest.raises(PolicyError, match=r"policy gold: schedules\[0\]\.cron: 'not cron' is not a cron"):
        await save_policy(store, bus, bad, ALICE)
    with pytest.raises(PolicyError, match="strategy: 'proxy' is not available"):
        await save_policy(store, bus, replace(GOLD, strategy="proxy"), ALICE)
    assert await keys(store) == [] and events(bus) == []


async def test_a_vm_explicitly_in_another_policy_is_refused_naming_it():
    store, bus = MemoryStore(), MemoryBus()
    await save_policy(store, bus, parse_policy({"name": "silver", "vms": ["db1", "web1"]}), ALICE)
    with pytest.raises(PolicyError) as caught:
        await save_policy(store, bus, parse_policy({"name": "gold", "vms": ["db2", "web1"]}), ALICE)
    assert str(caught.value).startswith("policy gold: vms[1]: VM 'web1' is already assigned to policy silver")
    assert await keys(store) == ["policies/silver"] and len(events(bus)) == 1
    # The same policy saved again keeps its own VMs.
    await save_policy(store, bus, parse_policy({"name": "silver", "vms": ["db1", "web1", "web2"]}), ALICE)


async def test_an_unreadable_stored_policy_is_left_out_and_reported():
    store, bus = MemoryStore(), MemoryBus()
    await save_policy(store, bus, GOLD, ALICE)
    await store.put("policies/broken", b"{not json")
    await store.put("policies/future", json.dumps({"v": [2, 0], "name": "future"}).encode())
    problems: list[PolicyError] = []
    assert [p.name for p in await list_policies(store, problems)] == ["gold"]
    assert sorted(p.policy for p in problems) == ["broken", "future"]


async def test_policies_are_sealed_in_an_encrypted_repository():
    inner = MemoryStore()
    store, bus = sealed(inner, Sealer(RepoKey("repo", bytes(range(32)), bytes(32)))), MemoryBus()
    await save_policy(store, bus, GOLD, ALICE)
    assert b"nightly" not in await inner.get("policies/gold")
    assert await get_policy(store, "gold") == GOLD


async def test_apply_result_stores_the_assigned_list_and_reports_joins_leaves_and_conflicts():
    store, bus = MemoryStore(), MemoryBus()
    gold = replace(GOLD, assigned=["id-old"])
    alpha = parse_policy({"name": "alpha", "vms": ["web2"]})
    await save_policy(store, bus, gold, ALICE)
    vms = [VmView("id-web1", "web1", "Default", frozenset({"gold"})),
           VmView("id-web2", "web2", "Default", frozenset({"gold"}))]
    evaluation = evaluate([gold, alpha], vms)
    reported: set = set()
    stored = await apply_result(store, bus, gold, evaluation["gold"], reported=reported, now=clock)
    assert stored.assigned == ["id-web1"] and (await get_policy(store, "gold")).assigned == ["id-web1"]
    after = events(bus)[1:]
    assert [(e.action, e.actor) for e in after] == [("updated", "scheduler"), ("vm_joined", "scheduler"),
                                                   ("vm_left", "scheduler"), ("conflict", "scheduler")]
    assert after[0].detail == {"fields": ["assigned"], "joined": ["id-web1"], "left": ["id-old"]}
    assert after[1].detail == {"vm_id": "id-web1", "vm": "web1"} and after[2].detail == {"vm_id": "id-old"}
    assert after[3].detail == {"vm_id": "id-web2", "vm": "web2", "held_by": "alpha", "how": "selection"}
    # Evaluated again: nothing changed, and the lasting conflict is not reported twice.
    again = evaluate([stored, alpha], vms)
    await apply_result(store, bus, stored, again["gold"], reported=reported)
    assert len(events(bus)) == 5
