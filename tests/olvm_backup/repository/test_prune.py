"""Prune on an encrypted repository in the in-memory store: keep-last 3 of five restore points leaves three that
each verify; the newest is never removed whatever the rules; protected and in-use restore points (a fresh marker;
a stale one does not count) are kept with their reason; one under Object Lock is skipped and reported; a dry run
(the plan alone) deletes nothing; and gc after prune frees exactly the packs only the removed points used."""
from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from olvm_backup.config import S3Settings
from olvm_backup.errors import StoreError
from olvm_backup.format.manifest import Manifest
from olvm_backup.objectstore.locking import utcnow
from olvm_backup.objectstore.memory import MemoryStore
from olvm_backup.repository import catalog, gc, holds, prune
from olvm_backup.repository.sealedstore import sealed
from olvm_backup.retention import Rules

from tests.olvm_backup.repository.test_gc import LATER, Repo, block

HOUR = 3600.0
DAY = 86400.0
T0 = 1_700_000_000.0


async def dated(repo: Repo, vm: str, backup_id: str, blocks: list[bytes], completed_at: float) -> Manifest:
    """A restore point (Repo.point) completed at a given time: its manifest committed again with it."""
    m = dataclasses.replace(await repo.point(vm, backup_id, blocks), created_at=completed_at - 60,
                            completed_at=completed_at)
    await catalog.commit(repo.store, m)
    return m


async def five(repo: Repo, vm: str = "vm1") -> list[Manifest]:
    """b0 (oldest) .. b4 (newest), a day apart, each sharing most blocks with the one before."""
    return [await dated(repo, vm, f"b{i}", [block(0), block(1), block(10 + i), block(20 + i // 2)], T0 + i * DAY)
            for i in range(5)]


def keep(rules: Rules):
    return lambda vm_id: rules


def decisions(plan: prune.PrunePlan) -> dict[str, list[str] | None]:
    """backup id -> its reasons when kept, None when removed."""
    return {d.point.backup_id: (d.reasons if d.keep else None) for v in plan.vms for d in v.decisions}


async def listed(repo: Repo) -> list[str]:
    return sorted(m.backup_id for m in await catalog.list_manifests(repo.store))


async def test_keep_last_3_of_five_leaves_three_that_each_verify_then_gc_frees_what_only_the_removed_used():
    repo = Repo()
    points = await five(repo)
    other = await dated(repo, "vm2", "other", [block(1), block(99)], T0)  # no rules for vm2: left alone
    rules = {"vm1": Rules(last=3)}
    plan = await prune.plan_prune(repo.store, rules.get, None, now=T0 + 5 * DAY)
    assert plan.unruled == ["vm2"]
    assert [d.point.backup_id for d in plan.vms[0].decisions] == ["b4", "b3", "b2", "b1", "b0"]  # newest first
    assert decisions(plan) == {"b4": ["newest (the base of the next incremental)", "keep-last"],
                               "b3": ["keep-last"], "b2": ["keep-last"], "b1": None, "b0": None}
    removed = []

    async def on_removed(r: prune.Removed) -> None:
        removed.append((r.backup_id, r.vm_id, r.rules))

    report = await prune.execute(repo.store, plan, on_removed=on_removed)
    assert removed == [("b0", "vm1", "keep-last 3"), ("b1", "vm1", "keep-last 3")]  # oldest first
    assert [r.backup_id for r in report.removed] == ["b0", "b1"] and report.locked == {} == report.held
    assert await listed(repo) == ["b2", "b3", "b4", "other"]
    assert sorted(await repo.all_verify()) == ["b2", "b3", "b4", "other"]

    live = {loc.pack_key for m in [*points[2:], other] for loc in m.chunks.values()}
    gone = {loc.pack_key for m in points[:2] for loc in m.chunks.values()} - live  # computed independently
    before = await repo.packs()
    [collected] = await gc.collect(repo.store, grace=DAY, wait=0, now=max(map(gc.pack_created, before)) + LATER)
    assert set(collected.deleted) == gone and gone
    after = await repo.packs()
    assert sum(before.values()) - sum(after.values()) == sum(before[k] for k in gone) == collected.freed
    assert sorted(await repo.all_verify()) == ["b2", "b3", "b4", "other"]


async def test_the_newest_is_never_removed_and_no_rules_keep_everything():
    repo = Repo()
    await five(repo)
    # keep-within 1h of the newest keeps only it; keep-daily 1 would keep b4 alone too: b4 in any case.
    plan = await prune.plan_prune(repo.store, keep(Rules(within=HOUR)), {"vm1"}, now=T0 + 5 * DAY)
    assert decisions(plan)["b4"] == ["newest (the base of the next incremental)", "keep-within 1h"]
    assert [d.point.backup_id for d in plan.vms[0].removals] == ["b3", "b2", "b1", "b0"]
    # A plan edited by hand to remove the newest is refused before anything is deleted.
    forged = dataclasses.replace(plan.vms[0].decisions[0], keep=False, reasons=[])
    plan.vms[0].decisions[0] = forged
    with pytest.raises(prune.PruneError, match="removes restore point b4 of vm1, the newest.*nothing was removed"):
        await prune.execute(repo.store, plan)
    assert await listed(repo) == ["b0", "b1", "b2", "b3", "b4"]
    # Rules with no rule in them keep everything.
    empty = await prune.plan_prune(repo.store, keep(Rules()), None, now=T0 + 5 * DAY)
    assert empty.removals == 0


async def test_protected_and_in_use_restore_points_are_kept_with_their_reason_a_stale_marker_is_not():
    repo = Repo()
    await five(repo)
    now = T0 + 5 * DAY
    await holds.protect(repo.store, "b0", "alice@host", "before the upgrade", now=lambda: now)
    async with holds.holding(repo.store, "b1", "restore", "bob@host", now=lambda: now):
        # A marker last refreshed 10 minutes ago: its process is gone.
        async with holds.holding(repo.store, "b2", "verify", "killed@host", now=lambda: now - 600):
            plan = await prune.plan_prune(repo.store, keep(Rules(last=1)), None, now=now)
        assert decisions(plan) == {"b4": ["newest (the base of the next incremental)", "keep-last"], "b3": None,
                                   "b2": None, "b1": ["in use"], "b0": ["protected"]}
        report = await prune.execute(repo.store, plan)
    assert sorted(r.backup_id for r in report.removed) == ["b2", "b3"]
    assert await listed(repo) == ["b0", "b1", "b4"]
    assert (await holds.protection(repo.store, "b0"))["note"] == "before the upgrade"


async def test_a_hold_taken_after_the_plan_still_keeps_its_restore_point():
    repo = Repo()
    await five(repo)
    plan = await prune.plan_prune(repo.store, keep(Rules(last=3)), None, now=T0 + 5 * DAY)
    await holds.protect(repo.store, "b0", "alice@host")
    async with holds.holding(repo.store, "b1", "export", "bob@host"):
        report = await prune.execute(repo.store, plan)
    assert report.held == {"b0": "protected", "b1": "in use"} and report.removed == []
    assert await listed(repo) == ["b0", "b1", "b2", "b3", "b4"]


async def test_a_locked_restore_point_is_skipped_and_reported_the_others_removed():
    repo = Repo()
    moment = [utcnow() - timedelta(days=60)]  # written two months ago: their 30-day locks have ended
    repo.raw = MemoryStore(settings=S3Settings(object_lock_days=30, object_lock_mode="COMPLIANCE"),
                           clock=lambda: moment[0])
    repo.store = sealed(repo.raw, repo.sealer)
    points = await five(repo)
    moment[0] = utcnow()
    await catalog.commit(repo.store, points[1])  # b1's manifest written again now: locked for 30 days
    plan = await prune.plan_prune(repo.store, keep(Rules(last=2)), None, now=T0 + 5 * DAY)
    report = await prune.execute(repo.store, plan)
    assert sorted(r.backup_id for r in report.removed) == ["b0", "b2"]
    assert list(report.locked) == ["b1"]
    assert "backups/vm1/b1/manifest is locked until" in report.locked["b1"] and "(compliance)" in report.locked["b1"]
    assert await listed(repo) == ["b1", "b3", "b4"]
    assert sorted(await repo.all_verify()) == ["b1", "b3", "b4"]


async def test_a_dry_run_the_plan_alone_deletes_nothing():
    repo = Repo()
    await five(repo)
    keys = sorted([i.key async for i in repo.raw.list("")])
    plan = await prune.plan_prune(repo.store, keep(Rules(last=1)), None, now=T0 + 5 * DAY)
    assert plan.removals == 4
    assert sorted([i.key async for i in repo.raw.list("")]) == keys


async def test_a_store_failure_stops_the_run_saying_what_was_removed_before_it():
    repo = Repo()
    await five(repo)
    plan = await prune.plan_prune(repo.store, keep(Rules(last=2)), None, now=T0 + 5 * DAY)

    async def fail_on_b1(op: str, key: str, part: int | None) -> None:
        if op == "delete_object" and "/b1/" in key:
            raise StoreError("the store said 503")
    repo.raw.before = fail_on_b1
    with pytest.raises(prune.PruneError, match=r"stopped at restore point b1 of vm1: .*503.*removed before it: b0"):
        await prune.execute(repo.store, plan)
    repo.raw.before = None
    assert await listed(repo) == ["b1", "b2", "b3", "b4"]  # b2 was not attempted
