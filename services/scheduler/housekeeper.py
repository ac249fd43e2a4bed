"""The active scheduler's housekeeping, the I/O around housekeeping.py's decisions: it follows `backup.events` while
leading, prunes a policy once the backups of its slot have all ended, and runs the scheduled gc.

Prunes and collections run as tasks of their own, started from the tick and never awaited by it (a long gc must not
delay a slot); they are cancelled when the leadership is lost (`close`). A prune or gc cut short is safe to run
again (prune.py, gc.py). What they delete is published on `repository.events` with the actor `scheduler`, as the
CLI does (repository/events.py).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime
from typing import Any, Iterable

from olvm_backup.config import Settings
from olvm_backup.errors import ObjectNotFound
from olvm_backup.objectstore import ObjectStore
from olvm_backup.policy.model import Policy
from olvm_backup.policy.status import SchedulerStatus
from olvm_backup.policy.store import get_policy
from olvm_backup.repository import events, gc, prune
from olvm_backup.retention import format_duration
from schemas import BackupEvent, Record
from schemas.topics import BACKUP_EVENTS

from .clock import Clock
from .housekeeping import GC_STATE_KEY, GcState, PruneBook, PruneDue, due_prunes, gc_due, gc_next, is_final
from .slots import Fired

log = logging.getLogger(__name__)

ACTOR = "scheduler"
GC_WAIT = 300.0   # seconds a scheduled gc waits for the backups running since its mark before it gives up (GcWaiting)
GC_RETRY = 300.0  # real seconds before a gc that waited in vain, or failed, is tried again
FOLLOW_RETRY = 5.0  # seconds between two attempts to follow backup.events


async def load_gc_state(store: ObjectStore) -> GcState:
    try:
        return GcState.from_json(await store.get(GC_STATE_KEY))
    except ObjectNotFound:
        return GcState()


async def save_gc_state(store: ObjectStore, state: GcState) -> None:
    await store.put(GC_STATE_KEY, state.to_json())


class Housekeeper:
    def __init__(self, settings: Settings, store: ObjectStore, bus: Any, clock: Clock, status: SchedulerStatus,
                 name: str = ACTOR) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.clock = clock
        self.status = status
        self.name = name
        self.book = PruneBook()
        self.prunes: dict[str, asyncio.Task] = {}
        self.gc_task: asyncio.Task | None = None
        self.gc_state: GcState | None = None
        self.gc_retry_at = 0.0  # time.monotonic() before which a gc that waited or failed is not tried again
        self.ready = asyncio.Event()  # backup.events followed: what is published from now on is seen

    # backup.events

    async def follow(self) -> None:
        """While leading: every final event of a request this instance published ends it (`on_event`)."""
        from olvm_backup.kafka.follow import Follower

        while True:
            follower = Follower(self.settings.kafka, BACKUP_EVENTS, self.on_event, client_id=f"{self.name}-events")
            try:
                await follower.start()
            except Exception as e:  # the broker away: slots still fire, their prunes wait for the next slot
                log.warning("following backup.events failed (%s); trying again", e)
                with contextlib.suppress(Exception):
                    await follower.stop()
                await asyncio.sleep(FOLLOW_RETRY)
                continue
            self.ready.set()
            try:
                await asyncio.Future()  # until cancelled
            finally:
                await follower.stop()

    async def wait_ready(self, timeout: float) -> None:
        """Before the first slot: the events of its requests must not be published before they are followed."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.ready.wait(), timeout)

    def on_event(self, record: Record) -> None:
        if isinstance(record, BackupEvent) and is_final(record):
            self.book = self.book.with_final(record.request_id)

    def expect(self, fired: Fired) -> None:
        """A slot's requests, about to be published: the policy's prune waits for their final events."""
        self.book = self.book.with_slot(fired.policy, fired.slot, [r.request_id for r in fired.requests])

    # the tick

    async def tick(self, policies: Iterable[Policy], now: datetime) -> None:
        """Start what is due; never waits for a prune or a gc to end."""
        self.prunes = {name: task for name, task in self.prunes.items() if not task.done()}
        due, self.book = due_prunes(self.book, {p.name: p for p in policies}, running=self.prunes)
        for d in due:
            self.prunes[d.policy] = asyncio.create_task(self._prune(d), name=f"scheduler-prune-{d.policy}")
        await self._gc_tick(now)

    async def _gc_tick(self, now: datetime) -> None:
        cron = self.settings.s3.gc_schedule
        if self.gc_state is None:
            self.gc_state = await load_gc_state(self.store)
        if cron and self.gc_state.last_slot is None:  # the schedule first seen: it starts now
            self.gc_state = GcState(last_slot=now)
            await save_gc_state(self.store, self.gc_state)
        nxt = gc_next(cron, now)
        gc_status = self.gc_status()
        gc_status["next"] = nxt.isoformat() if nxt else None
        if not cron:
            gc_status["state"] = "off"
            return
        if self.gc_task is not None and not self.gc_task.done():
            return
        if time.monotonic() < self.gc_retry_at:
            return
        slot = gc_due(cron, self.gc_state.last_slot, now)
        if slot is not None:
            self.gc_task = asyncio.create_task(self._gc(slot), name="scheduler-gc")

    def gc_status(self) -> dict[str, Any]:
        if self.status.gc is None:
            last = self.gc_state.finished_at if self.gc_state else None
            self.status.gc = {"state": "idle", "message": "", "last": last.isoformat() if last else None,
                              "last_result": self.gc_state.result if self.gc_state else "", "next": None}
        return self.status.gc

    # prune

    async def _prune(self, due: PruneDue) -> None:
        note: dict[str, Any] = {"slot": due.slot.isoformat(), "removed": 0, "error": ""}
        try:
            policy = await get_policy(self.store, due.policy)
            rules, vms = policy.retention, set(policy.vms) | set(policy.assigned)
            if rules.empty or not vms:
                return
            plan = await prune.plan_prune(self.store, lambda _vm_id: rules, vms)

            async def removed(r: prune.Removed) -> None:
                await events.publish(self.bus, "pruned", actor=ACTOR, backup_id=r.backup_id, vm=r.vm_id,
                                     reason=r.rules, detail={"vm_name": r.vm_name, "policy": policy.name,
                                                             "slot": due.slot.isoformat()})
                log.info("policy %s: pruned restore point %s of %s (%s)", policy.name, r.backup_id, r.vm_name,
                         r.rules)

            report = await prune.execute(self.store, plan, on_removed=removed)
            note.update(removed=len(report.removed), locked=len(report.locked), held=len(report.held))
            log.info("policy %s: prune after the backups of slot %s: %d restore point(s) removed", policy.name,
                     due.slot.isoformat(), len(report.removed))
        except Exception as e:  # the store or the broker away: the policy's next slot prunes again
            log.warning("policy %s: scheduled prune failed: %s", due.policy, e)
            note["error"] = str(e)
        note["at"] = self.clock.now().isoformat()
        self.status.prunes = {**self.status.prunes, due.policy: note}

    # gc

    async def _gc(self, slot: datetime) -> None:
        grace = self.settings.s3.gc_grace
        started = time.time()
        gc_status = self.gc_status()
        gc_status.update(state="running", message=f"slot {slot.isoformat()}")
        log.info("scheduled gc of slot %s starts", slot.isoformat())
        try:
            try:
                reports = await gc.collect(self.store, grace=grace, wait=GC_WAIT,
                                           repack_below=self.settings.s3.gc_repack_below)
            finally:
                await events.publish_swept(self.bus, self.store, started, actor=ACTOR, grace=grace)
            for r in reports:
                await events.publish(self.bus, "gc", actor=ACTOR, reason=f"packs no restore point names, older than "
                                     f"{format_duration(grace)} (scheduled, slot {slot.isoformat()})",
                                     detail={"gc_id": r.gc_id, "deleted": len(r.deleted), "freed": r.freed,
                                             "spared": len(r.spared), "locked": r.locked})
            result = (f"{sum(len(r.deleted) for r in reports)} pack(s) deleted, "
                      f"{sum(r.freed for r in reports)} bytes freed")
            state = GcState(last_slot=slot, finished_at=self.clock.now(), result=result)
            await save_gc_state(self.store, state)
            self.gc_state = state
            gc_status.update(state="idle", message="", last=state.finished_at.isoformat(), last_result=result)
            log.info("scheduled gc of slot %s: %s", slot.isoformat(), result)
        except gc.GcWaiting as e:
            self.gc_retry_at = time.monotonic() + GC_RETRY
            gc_status.update(state="waiting", message=f"{e}; tried again in {GC_RETRY / 60:.0f} min")
            log.warning("scheduled gc of slot %s: %s; trying again in %.0f min", slot.isoformat(), e, GC_RETRY / 60)
        except Exception as e:  # the store or the broker away: tried again later
            self.gc_retry_at = time.monotonic() + GC_RETRY
            gc_status.update(state="error", message=f"{e}; tried again in {GC_RETRY / 60:.0f} min")
            log.warning("scheduled gc of slot %s failed: %s", slot.isoformat(), e)

    async def close(self) -> None:
        """Leadership lost or the service stopping: the prunes and the gc running are cancelled (and awaited)."""
        tasks = [t for t in [*self.prunes.values(), self.gc_task] if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.prunes, self.gc_task = {}, None
