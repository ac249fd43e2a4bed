"""The backup and restore events the API has seen since it started, by request: what a job's progress stream
replays and then follows. Both event topics are followed from startup (kafka/follow.py: every record, no group),
so a job started through the API, the CLI or a schedule after that can be streamed from its first event.

Bounded: the newest MAX_JOBS requests are kept, each with at most about MAX_EVENTS events; the audit trail
(`GET /api/history`) holds the rest."""
from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from schemas.topics import BACKUP_EVENTS, RESTORE_EVENTS

from olvm_backup.config import KafkaSettings

FINAL = frozenset({"completed", "failed", "cancelled"})  # as the CLI's jobs.py ends following
MAX_JOBS = 500
MAX_EVENTS = 1000  # per job; past it, a progress event replaces the progress event before it


def event_doc(kind: str, event: Any) -> dict[str, Any]:
    """An event as the stream sends it: the record's fields, which job kind it belongs to, and the percentage a
    progress event stands for (what the CLI's progress bar shows)."""
    doc = event.model_dump(mode="json")
    doc["job"] = kind
    if event.bytes_total:
        doc["percent"] = round(100.0 * min(1.0, (event.bytes_done or 0) / event.bytes_total), 1)
    return doc


@dataclass
class Job:
    request_id: str
    kind: str                    # backup or restore
    request: dict[str, Any] | None = None   # what was asked, when asked through this API
    events: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def state(self) -> str:
        return self.events[-1]["kind"] if self.events else "requested"

    @property
    def ended(self) -> bool:
        return any(e["kind"] in FINAL for e in self.events)

    def summary(self) -> dict[str, Any]:
        last = self.events[-1] if self.events else {}
        return {"request_id": self.request_id, "job": self.kind, "state": self.state, "ended": self.ended,
                "vm": last.get("vm") or (self.request or {}).get("vm"),
                "restore_point": last.get("restore_point") or (self.request or {}).get("restore_point"),
                "backup_id": last.get("backup_id"), "percent": last.get("percent"),
                "message": last.get("message", ""), "at": last.get("at"), "request": self.request}


class JobWatch:
    def __init__(self, kafka: KafkaSettings) -> None:
        self._kafka = kafka
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._followers: list[Any] = []

    def job(self, request_id: str) -> Job | None:
        return self._jobs.get(request_id)

    def recent(self) -> list[Job]:
        return list(reversed(self._jobs.values()))

    def _get(self, request_id: str, kind: str) -> Job:
        job = self._jobs.get(request_id)
        if job is None:
            job = self._jobs[request_id] = Job(request_id, kind)
            while len(self._jobs) > MAX_JOBS:
                self._jobs.popitem(last=False)
        return job

    def asked(self, kind: str, request_id: str, request: dict[str, Any]) -> Job:
        """A request this API publishes: known before its first event."""
        job = self._get(request_id, kind)
        job.request = request
        return job

    async def _seen(self, kind: str, event: Any) -> None:
        job = self._get(event.request_id, kind)
        doc = event_doc(kind, event)
        if len(job.events) >= MAX_EVENTS and doc["kind"] == "progress" and job.events[-1]["kind"] == "progress":
            job.events[-1] = doc  # a long job's progress: the newest stands for those it replaces
        else:
            job.events.append(doc)
        async with job.changed:
            job.changed.notify_all()

    @staticmethod
    async def wait(job: Job, seen: int, timeout: float) -> bool:
        """Until `job` has more than `seen` events (True) or `timeout` seconds passed (False)."""
        async with job.changed:
            try:
                await asyncio.wait_for(job.changed.wait_for(lambda: len(job.events) > seen), timeout)
            except asyncio.TimeoutError:
                return False
        return True

    async def __aenter__(self) -> "JobWatch":
        from olvm_backup.kafka.follow import Follower

        try:
            for kind, topic in (("backup", BACKUP_EVENTS), ("restore", RESTORE_EVENTS)):
                follower = Follower(self._kafka, topic, lambda e, k=kind: self._seen(k, e),
                                    client_id=f"olvm-backup-api/{kind}-events")
                await follower.start()
                self._followers.append(follower)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        for follower in reversed(self._followers):
            with contextlib.suppress(Exception):
                await follower.stop()
        self._followers.clear()
