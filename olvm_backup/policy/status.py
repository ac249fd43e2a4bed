"""The active scheduler's status object, `scheduler/status.json`: written every tick by the leader
(services/scheduler), read by `olvm-backup status` (and whoever wants the next runs) without asking the broker.

`summary` (pure) is the one line `status` shows: who leads, whether the engine's event feed is followed, the
next run; a status older than STALE seconds means no scheduler is active (none runs, or none leads).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from ..errors import BackupError, ObjectNotFound

STATUS_KEY = "scheduler/status.json"
STALE = 120.0  # real seconds without a write after which no scheduler is taken to be active
MAX_SKIPPED = 10  # skipped-slot reports kept


@dataclass
class SchedulerStatus:
    instance: str
    leader_since: datetime
    clock: str = "real time"
    schedules: dict[str, dict[str, Any]] = field(default_factory=dict)  # "policy/schedule" -> next, last_fired
    last_fired: dict[str, Any] | None = None
    skipped: list[str] = field(default_factory=list)
    feed: dict[str, Any] = field(default_factory=lambda: {"state": "off", "error": "", "last_event_id": None})
    error: str = ""
    # Housekeeping (services/scheduler/housekeeper.py): the last prune per policy ("at", "slot", "removed",
    # "error"), and the scheduled gc ("state": idle, running, waiting, error or off; "message", "last",
    # "last_result", "next").
    prunes: dict[str, dict[str, Any]] = field(default_factory=dict)
    gc: dict[str, Any] | None = None
    # Hypervisor-snapshots policies (services/scheduler/snapshotting.py): the last slot run per policy ("at", "slot",
    # "taken", "removed", "failed": VM names whose snapshot failed).
    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_doc(self, now: datetime, written_at: float) -> dict[str, Any]:
        doc = asdict(self)
        doc["leader_since"] = self.leader_since.isoformat()
        return {**doc, "now": now.isoformat(), "written_at": written_at}


async def write_status(store, status: SchedulerStatus, now: datetime) -> None:
    await store.put(STATUS_KEY, json.dumps(status.to_doc(now, time.time()), indent=1).encode())


async def read_status(store) -> dict[str, Any] | None:
    try:
        return json.loads(await store.get(STATUS_KEY))
    except ObjectNotFound:
        return None
    except ValueError as e:
        raise BackupError(f"{STATUS_KEY} is not JSON: {e}") from None


def summary(doc: dict[str, Any] | None, real_now: float) -> tuple[bool, str]:
    """(ok, words) for `olvm-backup status`'s scheduler line."""
    if doc is None:
        return False, "no scheduler has run against this bucket (services.scheduler)"
    age = real_now - float(doc.get("written_at", 0))
    if age > STALE:
        return False, f"no active scheduler: the last one ({doc.get('instance')}) wrote its status {age:.0f}s ago"
    feed = doc.get("feed") or {}
    if feed.get("state") == "following":
        followed = f"engine events followed (last event {feed.get('last_event_id')})"
    elif feed.get("state") == "error":
        followed = f"engine events NOT followed: {feed.get('error')}"
    else:
        followed = "engine events not followed (no engine)"
    nexts = sorted((s["next"], key) for key, s in (doc.get("schedules") or {}).items() if s.get("next"))
    next_run = f"next run {nexts[0][0]} ({nexts[0][1]})" if nexts else "no schedule"
    words = f"leader {doc.get('instance')}; {followed}; {next_run}"
    housekeeping, trouble = _housekeeping(doc)
    words += housekeeping
    if doc.get("error"):
        words += f"; last tick failed: {doc['error']}"
    ok = feed.get("state") != "error" and not doc.get("error") and not trouble
    return ok, words


def _housekeeping(doc: dict[str, Any]) -> tuple[str, bool]:
    """The scheduled prunes and gc, for the scheduler line ('' when the status has none), and whether one failed."""
    words, trouble = "", False
    prunes = doc.get("prunes") or {}
    if prunes:
        said = []
        for policy, p in sorted(prunes.items()):
            if p.get("error"):
                trouble = True
                said.append(f"{policy} {p.get('at')} FAILED: {p['error']}")
            else:
                said.append(f"{policy} {p.get('at')} ({p.get('removed', 0)} removed)")
        words += "; last prune " + ", ".join(said)
    snaps = doc.get("snapshots") or {}
    if snaps:
        said = []
        for policy, p in sorted(snaps.items()):
            failed = p.get("failed") or []
            trouble = trouble or bool(failed)
            said.append(f"{policy} {p.get('at')} ({p.get('taken', 0)} taken, {p.get('removed', 0)} removed"
                        + (f", FAILED for {', '.join(failed)}" if failed else "") + ")")
        words += "; last snapshots " + ", ".join(said)
    gc = doc.get("gc")
    if gc:
        if gc.get("state") == "off":
            return words + "; scheduled gc off", trouble
        words += f"; last gc {gc.get('last') or 'never'}" + (f" ({gc['last_result']})" if gc.get("last_result") else "")
        if gc.get("state") == "running":
            words += ", gc running"
        elif gc.get("state") == "waiting":
            words += f", gc waiting: {gc.get('message')}"
        elif gc.get("state") == "error":
            trouble = True
            words += f", gc FAILED: {gc.get('message')}"
        words += f"; next gc {gc.get('next')}"
    return words, trouble
