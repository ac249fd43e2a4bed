"""The active scheduler's housekeeping decisions (pure): which policy's prune is due after its backups, and when the
scheduled garbage collection runs. The I/O (following `backup.events`, pruning, collecting) is housekeeper.py's.

Prune after the backups: each slot the leader fires is a `Batch`, the request ids it published for one policy.
Every final event on `backup.events` (completed, failed, cancelled) of one of those ids ends it; once a batch of a
policy has no request left, that policy's prune is due (if it has retention rules: no rules is never pruned). A
batch of a policy whose prune is still running waits for it to end. When a batch ends, the older batches of the
same policy are dropped with it (the prune that follows covers their VMs too; their still running backups have
not committed a restore point yet, and prune never removes a VM's newest one). Only what this instance published
is known: the requests of slots fired by an earlier leader are not followed, so after a failover the policy is
pruned after its next slot instead.

Scheduled gc: `OLVM_GC_SCHEDULE`, a cron expression in UTC. `gc_due` says which slot to run: the latest one
passed since the last one done (a run missed while no scheduler ran is done once, not once per slot missed).
The last slot done is durable (`scheduler/gc.json`, `GcState`), written once a collection ends, so a failover
neither skips a run nor does one twice; a collection cut short by a failover is run again by the new leader
(gc resumes what it had marked).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Iterable, Mapping

from olvm_backup.policy.model import Policy, Schedule
from olvm_backup.policy.schedule import next_slot, slots_between
from schemas import BackupEvent

FINAL_KINDS = frozenset({"completed", "failed", "cancelled"})
MAX_BATCHES = 20  # per policy: the oldest are dropped beyond (requests whose final event never came)
GC_STATE_KEY = "scheduler/gc.json"


def is_final(event: BackupEvent) -> bool:
    return event.kind in FINAL_KINDS


@dataclass(frozen=True)
class Batch:
    """The requests one slot of a policy asked for, and those of them not ended yet."""

    policy: str
    slot: datetime
    requests: frozenset[str]
    left: frozenset[str]


@dataclass(frozen=True)
class PruneBook:
    batches: tuple[Batch, ...] = ()

    def waiting(self) -> frozenset[str]:
        """Every request id a batch still waits for."""
        return frozenset().union(*(b.left for b in self.batches))

    def with_slot(self, policy: str, slot: datetime, requests: Iterable[str]) -> "PruneBook":
        """A slot's requests, before they are published (so no final event can come first). The same slot again
        (fired again after a publish failed) changes nothing."""
        if any(b.policy == policy and b.slot == slot for b in self.batches):
            return self
        ids = frozenset(requests)
        mine = [b for b in self.batches if b.policy == policy][-(MAX_BATCHES - 1):]
        others = [b for b in self.batches if b.policy != policy]
        return replace(self, batches=(*others, *mine, Batch(policy, slot, ids, ids)))

    def with_final(self, request_id: str) -> "PruneBook":
        if request_id not in self.waiting():
            return self
        return replace(self, batches=tuple(replace(b, left=b.left - {request_id}) for b in self.batches))


@dataclass(frozen=True)
class PruneDue:
    policy: str
    slot: datetime  # the latest slot of the policy whose backups all ended


def due_prunes(book: PruneBook, policies: Mapping[str, Policy], running: Iterable[str] = ()) -> \
        tuple[list[PruneDue], PruneBook]:
    """The prunes to start now (policies by name; `running`: the policies whose prune has not ended yet) and the
    book without the batches they end. A batch of a policy gone, or without retention rules, is dropped."""
    running = set(running)
    due: list[PruneDue] = []
    keep: list[Batch] = []
    ended: dict[str, datetime] = {}
    for b in book.batches:
        if not b.left and b.policy not in running:
            ended[b.policy] = max(b.slot, ended.get(b.policy, b.slot))
    for b in book.batches:
        policy = policies.get(b.policy)
        if policy is None or policy.retention.empty:
            if b.left and policy is not None:
                keep.append(b)  # its rules may come before its backups end
            continue
        if b.policy in ended and b.slot <= ended[b.policy]:
            continue
        keep.append(b)
    for name, slot in sorted(ended.items()):
        policy = policies.get(name)
        if policy is not None and not policy.retention.empty:
            due.append(PruneDue(name, slot))
    return due, replace(book, batches=tuple(keep))


def gc_schedule(cron: str) -> Schedule:
    return Schedule(name="gc", cron=cron, timezone="UTC")


def gc_due(cron: str, last: datetime | None, now: datetime) -> datetime | None:
    """The gc slot to run now: the latest slot after `last` and not after `now`, or None ('' = never). With no
    `last` (the first time the scheduler sees the schedule) none is due: it starts from now."""
    if not cron or last is None:
        return None
    slots = slots_between(gc_schedule(cron), last, now)
    return slots[-1] if slots else None


def gc_next(cron: str, now: datetime) -> datetime | None:
    return next_slot(gc_schedule(cron), now) if cron else None


@dataclass(frozen=True)
class GcState:
    """`scheduler/gc.json`: the last gc slot done (or when the schedule was first seen), and what that run did."""

    last_slot: datetime | None = None
    finished_at: datetime | None = None
    result: str = ""

    def to_json(self) -> bytes:
        return json.dumps({"v": 1, "last_slot": self.last_slot.isoformat() if self.last_slot else None,
                           "finished_at": self.finished_at.isoformat() if self.finished_at else None,
                           "result": self.result}, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "GcState":
        doc = json.loads(data)

        def when(key: str) -> datetime | None:
            return datetime.fromisoformat(doc[key]) if doc.get(key) else None

        return cls(when("last_slot"), when("finished_at"), str(doc.get("result", "")))
