"""The active scheduler's hypervisor-snapshots policies: at each slot of such a policy, for each VM it holds, a
snapshot taken and the policy's older snapshots its retention no longer keeps removed (olvm_backup/snapshots/).
No backup is requested and nothing goes to the repository but the snapshots' records.

A slot's VMs are taken one after another by a task of its own, started from the tick and never awaited by it; the
task is cancelled with the leadership (`close`). Each VM's run is told on `backup.events` as other scheduled work
is: `started`, then `completed` (the snapshot, its consistency, what was removed) or `failed`, under the slot's
request id for the VM (policy/requests.py), with `detail.job` "hypervisor-snapshot". That id is also the snapshot's
correlation id, so a slot fired again (after a failover, or a publish that failed) finds its snapshot recorded and
takes no second one. A run cut short leaves at most its snapshot, ours and recorded: the next slot's retention
counts it.
"""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Any, Callable

from olvm_backup import metrics
from olvm_backup.engine.connection import Engine
from olvm_backup.engine.vms import find_vm
from olvm_backup.objectstore import ObjectStore
from olvm_backup.policy.model import Policy
from olvm_backup.policy.schedule import slot_text
from olvm_backup.policy.status import SchedulerStatus
from olvm_backup.policy.store import get_policy
from olvm_backup.snapshots import records
from olvm_backup.snapshots.steps import keep_policy_snapshots, take
from schemas import BackupEvent, BackupRequest
from schemas.records import BackupEventKind, BackupOutcome
from schemas.topics import BACKUP_EVENTS

from .slots import Fired

log = logging.getLogger(__name__)

KIND = "hypervisor-snapshots"
JOB = "hypervisor-snapshot"  # backup.events' detail.job for these runs
ACTOR = "scheduler"


class SnapshotKeeper:
    def __init__(self, store: ObjectStore, bus: Any, engine: Engine, status: SchedulerStatus,
                 now: Callable[[], datetime]) -> None:
        self.store = store
        self.bus = bus
        self.engine = engine
        self.status = status
        self.now = now  # the scheduler's clock
        self.tasks: dict[str, asyncio.Task] = {}  # by "policy/schedule/slot"

    @staticmethod
    def takes(fired: Fired) -> bool:
        return fired.kind == KIND

    def start(self, fired: Fired) -> None:
        """Run the slot's snapshots as a task; a slot already running is not started twice."""
        self.tasks = {k: t for k, t in self.tasks.items() if not t.done()}
        key = f"{fired.policy}/{fired.schedule}/{slot_text(fired.slot)}"
        if key not in self.tasks:
            self.tasks[key] = asyncio.create_task(self._slot(fired), name=f"scheduler-snapshots-{key}")

    async def wait(self) -> None:
        """Until every slot started has ended (tests; a slot's failures are its events, never raised here)."""
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    async def close(self) -> None:
        tasks = [t for t in self.tasks.values() if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.tasks = {}

    async def _slot(self, fired: Fired) -> None:
        try:
            policy = await get_policy(self.store, fired.policy)
        except Exception as e:  # the store away, or the policy deleted since: the next slot tries again
            log.warning("policy %s: the snapshots of slot %s are not taken: %s", fired.policy,
                        slot_text(fired.slot), e)
            return
        note: dict[str, Any] = {"slot": fired.slot.isoformat(), "taken": 0, "removed": 0, "failed": []}
        for request in fired.requests:
            await self._vm(policy, fired, request, note)
        note["at"] = self.now().isoformat()
        self.status.snapshots = {**self.status.snapshots, policy.name: note}

    async def _publish(self, request: BackupRequest, kind: BackupEventKind, message: str, started: float,
                       **detail: Any) -> None:
        outcome = None
        if kind in ("completed", "failed"):
            outcome = BackupOutcome(duration=round(time.time() - started, 3), error_type=detail.pop("error_type", None))
        event = BackupEvent(request_id=request.request_id, vm=request.vm, kind=kind, message=message, at=time.time(),
                            outcome=outcome, detail={"job": JOB, "policy": request.policy,
                                                     "requested_by": request.requested_by, **detail})
        try:
            await self.bus.publish(BACKUP_EVENTS, event, key=request.request_id)
        except Exception as e:  # the broker away: the run goes on, its log says what happened
            log.warning("could not publish the %s event of %s: %s", kind, request.request_id, e)

    async def _vm(self, policy: Policy, fired: Fired, request: BackupRequest, note: dict[str, Any]) -> None:
        started = time.time()
        what = f"policy {policy.name}: snapshot of VM {request.vm}"
        try:
            vm = await find_vm(self.engine, request.vm)
            what = f"policy {policy.name}: snapshot of VM {vm.name}"
            if request.request_id in await records.recorded(self.store, vm.vm_id):
                log.info("%s for slot %s was taken already (fired again)", what, slot_text(fired.slot))
                return
            await self._publish(request, "started", f"{what}: taking it ({request.requested_by})", started,
                                vm_name=vm.name)
            taken = await take(self.engine, self.store, vm, purpose=f"policy {policy.name} {slot_text(fired.slot)}",
                               by=ACTOR, policy=policy.name, quiesce=policy.quiesce,
                               correlation_id=request.request_id)
            kept = await keep_policy_snapshots(self.engine, self.store, vm, policy.name, policy.retention)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("%s failed: %s", what, e)
            metrics.job_ended(JOB, "failed", time.time() - started)
            note["failed"].append(what.rsplit(" ", 1)[-1])
            await self._publish(request, "failed", f"{what} failed: {e}", started, error_type=type(e).__name__)
            return
        s = taken.snapshot
        metrics.job_ended(JOB, "completed", time.time() - started)
        note["taken"] += 1
        note["removed"] += len(kept.removed)
        gone = f"; removed {len(kept.removed)} older ({policy.retention.describe()})" if kept.removed else ""
        if kept.left:
            gone += (f"; could not remove {', '.join(x.snapshot_id for x, _ in kept.left)} (tried again at the next "
                     f"slot): {kept.left[0][1]}")
        log.info("%s: %s taken (%s)%s", what, s.snapshot_id, taken.consistency, gone)
        await self._publish(request, "completed", f"{what}: {s.snapshot_id} taken ({taken.consistency}){gone}",
                            started, vm_name=vm.name, snapshot_id=s.snapshot_id, description=s.description,
                            consistency=taken.consistency, removed=[r.snapshot_id for r in kept.removed],
                            not_removed={x.snapshot_id: why for x, why in kept.left})
