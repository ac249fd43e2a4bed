"""The scheduler's progress, durable in the object store (`scheduler/state.json`): per policy and schedule, the
last slot fired. A new leader goes on from there, so a slot is fired by one instance or, after a failover
mid-slot, again with the same request ids (never skipped); it is written once a slot's requests are published.

A schedule seen for the first time starts from that moment (`seen`): slots before it belong to no run of it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime

from olvm_backup.errors import ObjectNotFound
from olvm_backup.objectstore import ObjectStore

STATE_KEY = "scheduler/state.json"
VERSION = 1


def schedule_id(policy: str, schedule: str) -> str:
    return f"{policy}/{schedule}"  # names are slugs: no '/' in either


@dataclass(frozen=True)
class SchedulerState:
    fired: dict[str, datetime] = field(default_factory=dict)  # schedule_id -> last slot fired, or first seen

    def last(self, policy: str, schedule: str) -> datetime | None:
        return self.fired.get(schedule_id(policy, schedule))

    def with_fired(self, policy: str, schedule: str, slot: datetime) -> "SchedulerState":
        return replace(self, fired={**self.fired, schedule_id(policy, schedule): slot})

    def to_json(self) -> bytes:
        return json.dumps({"v": VERSION, "fired": {k: v.isoformat() for k, v in sorted(self.fired.items())}},
                          indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "SchedulerState":
        doc = json.loads(data)
        return cls({k: datetime.fromisoformat(v) for k, v in doc.get("fired", {}).items()})


async def load_state(store: ObjectStore) -> SchedulerState:
    try:
        return SchedulerState.from_json(await store.get(STATE_KEY))
    except ObjectNotFound:
        return SchedulerState()


async def save_state(store: ObjectStore, state: SchedulerState) -> None:
    await store.put(STATE_KEY, state.to_json())
