"""`olvm-backup prune`, `protect`, `unprotect` and `gc`: deleting what retention no longer keeps.

Whatever deletes, or changes a hold, publishes a RepositoryEvent on `repository.events` (who, what, why): the
broker is asked first, and a broker that does not answer refuses the command before anything is deleted. A dry run
deletes nothing and publishes nothing.
"""
from __future__ import annotations

import contextlib
import time
from typing import Any, AsyncIterator

from ..config import Settings
from ..errors import BackupError
from ..repository import catalog, events, gc, holds, prune
from ..repository.sealedstore import open_sealed
from ..retention import Rules, format_duration, parse_duration
from ..actors import actor
from .progress import human

GC_WAITING = 3  # exit status: gc could not sweep yet, backups running since its mark have not ended

RULE_OPTIONS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")


@contextlib.asynccontextmanager
async def open_events(settings: Settings, what: str) -> AsyncIterator[Any]:
    """The bus `repository.events` is published on; refused before anything happens when the broker does not
    answer."""
    from ..kafka import Bus
    from ..kafka.probe import require_broker

    await require_broker(settings.kafka, f"{what} is published on repository.events, the audit trail, first")
    async with Bus(settings.kafka, client_id="olvm-backup-cli") as bus:
        yield bus


@contextlib.asynccontextmanager
async def _events_unless(dry_run: bool, settings: Settings, what: str) -> AsyncIterator[Any]:
    if dry_run:
        yield None
        return
    async with open_events(settings, what) as bus:
        yield bus


def rules_from_args(args: Any) -> Rules:
    within = parse_duration(args.keep_within) if args.keep_within else 0.0
    return Rules(**{name: getattr(args, f"keep_{name}") or 0 for name in RULE_OPTIONS}, within=within)


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))


async def run_prune(settings: Settings, *, vm: str | None, policy: str | None, rules: Rules, dry_run: bool) -> int:
    if policy is not None and not rules.empty:
        raise BackupError("prune --policy takes its rules from the policy's `retention`: give no --keep-* with it")
    if policy is None and rules.empty:
        raise BackupError("say which restore points to keep: --keep-last N, --keep-hourly/-daily/-weekly/-monthly/"
                          "-yearly N or --keep-within 7d, or --policy P for a policy's retention rules")
    who = actor()
    async with open_sealed(settings, ensure_bucket=False) as (store, _):
        reason_extra: dict[str, Any] = {}
        if policy is not None:
            from ..policy.store import get_policy

            p = await get_policy(store, policy)
            if p.kind != "backup":
                raise BackupError(f"policy {p.name} is a {p.kind} policy: its retention is for the snapshots it "
                                  "takes, applied at each of its slots, not for restore points")
            rules, vms, reason_extra = p.retention, set(p.vms) | set(p.assigned), {"policy": p.name}
            if rules.empty:
                print(f"policy {p.name} has no retention rules: every restore point of its VMs is kept")
                return 0
            if not vms:
                print(f"policy {p.name} holds no VM: nothing to prune")
                return 0
        else:
            vms = {vm} if vm else None
        plan = await prune.plan_prune(store, lambda _vm_id: rules, vms)
        if not plan.vms:
            print("no restore points" + (f" of {vm}" if vm else ""))
            return 0
        for v in plan.vms:
            print(f"{v.vm_name} ({v.vm_id}): {v.rules.describe()}")
            for d in v.decisions:
                verdict = "KEEP  " if d.keep else "REMOVE"
                why = f"  {', '.join(d.reasons)}" if d.keep else ""
                print(f"  {verdict} {d.point.backup_id}  {_when(d.point.completed_at)} UTC{why}")
        if dry_run:
            print(f"dry run: {plan.removals} restore point(s) would be removed; nothing was")
            return 0
        if not plan.removals:
            print("nothing to remove")
            return 0
        async with open_events(settings, "every restore point prune removes") as bus:
            async def removed(r: prune.Removed) -> None:
                await events.publish(bus, "pruned", actor=who, backup_id=r.backup_id, vm=r.vm_id, reason=r.rules,
                                     detail={"vm_name": r.vm_name, **reason_extra})
                print(f"removed {r.backup_id} of {r.vm_name}")

            report = await prune.execute(store, plan, on_removed=removed)
    print(f"removed {len(report.removed)} restore point(s); their data goes with the next `olvm-backup gc`")
    for backup_id, lock in report.locked.items():
        print(f"skipped {backup_id}: {lock}")
    for backup_id, held in report.held.items():
        print(f"kept {backup_id}: {held} since the plan was made")
    return 0


async def run_protect(settings: Settings, backup_id: str, note: str) -> int:
    who = actor()
    async with open_sealed(settings, ensure_bucket=False) as (store, _):
        manifest = await catalog.find(store, backup_id)  # an id not in the catalog is refused
        async with open_events(settings, "a protection") as bus:
            await holds.protect(store, backup_id, who, note)
            await events.publish(bus, "protected", actor=who, backup_id=backup_id, vm=manifest.vm_id,
                                 reason=f"protect by {who}", detail={"vm_name": manifest.vm_name, "note": note})
    print(f"protected restore point {backup_id} of {manifest.vm_name}: prune keeps it whatever its rules say "
          "(`olvm-backup forget` still removes it)")
    return 0


async def run_unprotect(settings: Settings, backup_id: str) -> int:
    who = actor()
    async with open_sealed(settings, ensure_bucket=False) as (store, _):
        if await holds.protection(store, backup_id) is None:
            print(f"restore point {backup_id} is not protected")
            return 0
        async with open_events(settings, "a protection lifted") as bus:
            await holds.unprotect(store, backup_id)
            await events.publish(bus, "unprotected", actor=who, backup_id=backup_id,
                                 reason=f"unprotect by {who}")
    print(f"restore point {backup_id} is no longer protected: prune's rules apply to it again")
    return 0


async def run_gc(settings: Settings, *, dry_run: bool, grace: str | None, wait: str,
                 repack_below: float | None = None) -> int:
    grace_s = parse_duration(grace) if grace else settings.s3.gc_grace
    repack = settings.s3.gc_repack_below if repack_below is None else repack_below
    wait_s = parse_duration(wait)
    who = actor()
    started = time.time()
    async with open_sealed(settings, ensure_bucket=False) as (store, _):
        async with _events_unless(dry_run, settings, "every pack gc deletes") as bus:
            try:
                reports = await gc.collect(store, grace=grace_s, wait=wait_s, dry_run=dry_run,
                                           repack_below=repack)
            except gc.GcWaiting as e:
                if bus is not None:
                    await events.publish_swept(bus, store, started, actor=who, grace=grace_s)
                print(f"olvm-backup gc: {e}")
                return GC_WAITING
            if bus is not None:
                await events.publish_swept(bus, store, started, actor=who, grace=grace_s)
                for r in reports:
                    await events.publish(bus, "gc", actor=who, reason=f"packs no restore point names, older than "
                                         f"{format_duration(grace_s)}",
                                         detail={"gc_id": r.gc_id, "deleted": len(r.deleted), "freed": r.freed,
                                                 "spared": len(r.spared), "locked": r.locked})
    verb = "would delete" if dry_run else "deleted"
    for r in reports:
        for pack in r.repacked:
            print(f"repacked {pack}: its live chunks copied into a new pack")
        for pack in r.deleted:
            print(f"{verb} {pack}")
        for pack in r.spared:
            print(f"spared {pack}: a backup committed since the mark names it")
        for pack in r.locked:
            print(f"locked {pack}: under S3 Object Lock, left in place")
    deleted = sum(len(r.deleted) for r in reports)
    freed = sum(r.freed for r in reports)
    print(f"{verb} {deleted} pack(s), {human(freed)} freed" + (" (dry run: nothing was deleted)" if dry_run else "")
          + f"; grace {format_duration(grace_s)}")
    return 0
