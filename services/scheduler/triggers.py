"""Tag triggers: the engine's tag events re-evaluate the selections at once (the tick does too, every few
minutes, so nothing depends on the feed alone); changed assignments are saved through the policy store (actor
"scheduler": vm_joined, vm_left events), and a policy that says `on_join` asks for a backup of each VM that
joined, right away.

A join caused by an engine event gets a request id derived from that event's id, so an event handed over again
(the feed delivers at least once) asks for nothing new. The requests are published before the assignment is
saved: a crash between the two repeats them, with the same ids, rather than losing them.
"""
from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from typing import Iterable

from olvm_backup.config import Settings
from olvm_backup.engine.inventory import EngineEvent, list_vms, vm_names_in
from olvm_backup.kafka import Bus
from olvm_backup.objectstore import ObjectStore
from olvm_backup.policy.model import Policy
from olvm_backup.policy.requests import backup_request, join_cause, request_id, tag_cause
from olvm_backup.policy.schedule import slot_text
from olvm_backup.policy.selection import Evaluation, VmView, evaluate
from olvm_backup.policy.status import SchedulerStatus
from olvm_backup.policy.store import apply_result, list_policies
from olvm_backup.policy.tagfeed import USER_ATTACH_TAG_TO_VM, USER_DETACH_VM_FROM_TAG, FeedStatus, TagFeed, follow
from schemas import BackupRequest
from schemas.topics import BACKUP_REQUESTS

log = logging.getLogger(__name__)

_TAG_IN_TEXT = re.compile(r"\bTag (?P<tag>.+?) was (?:attached to|detached from)\b")


def event_names(event: EngineEvent) -> set[str]:
    return ({event.vm_name} if event.vm_name else set()) | set(vm_names_in(event.description))


def cause_of(vm: VmView, events: Iterable[EngineEvent]) -> EngineEvent | None:
    """The latest tag attach or detach event naming `vm` (by id, or by name as the engine's text has it)."""
    found = None
    for event in events:
        if event.code in (USER_ATTACH_TAG_TO_VM, USER_DETACH_VM_FROM_TAG) and \
                (event.vm_id == vm.vm_id or vm.name in event_names(event)):
            found = event
    return found


def join_requests(policy: Policy, joined: Iterable[VmView], events: list[EngineEvent], now: datetime) \
        -> list[BackupRequest]:
    """The backups an `on_join` policy asks for its VMs that joined (none for another policy)."""
    if not policy.on_join:
        return []
    requests = []
    for vm in joined:
        event = cause_of(vm, events)
        if event is not None:
            m = _TAG_IN_TEXT.search(event.description)
            tag = m.group("tag") if m else "?"
            cause = tag_cause(tag, vm.name, event.code == USER_ATTACH_TAG_TO_VM) + f" (engine event {event.id})"
            rid = request_id(policy, "tag", str(event.id), vm.vm_id)
        else:  # found by an evaluation, not an event: that evaluation's minute tells it apart
            cause, rid = join_cause(vm.name), request_id(policy, "join", slot_text(now), vm.vm_id)
        requests.append(backup_request(policy, vm, cause=cause, request_id=rid, now=now.timestamp()))
    return requests


class Triggers:
    def __init__(self, settings: Settings, store: ObjectStore, bus: Bus, engine, status: SchedulerStatus, *,
                 now=lambda: datetime.now(timezone.utc)) -> None:
        self.settings, self.store, self.bus, self.engine, self.status = settings, store, bus, engine, status
        self._now = now
        self._reported: set[tuple[str, str, str]] = set()  # conflicts told once per leadership

    async def follow(self) -> None:
        await follow(TagFeed(self.engine, self.store), self.on_tag_events,
                     interval=self.settings.scheduler.event_poll_interval, status=self._feed)

    def _feed(self, feed: FeedStatus) -> None:
        self.status.feed = {"state": "following" if feed.following else "error", "error": feed.error or "",
                            "last_event_id": feed.last_event_id}

    async def on_tag_events(self, events: list[EngineEvent]) -> None:
        log.info("%d tag event(s) from the engine (last %d): re-evaluating the selections", len(events), events[-1].id)
        await self.reevaluate(await list_policies(self.store), await list_vms(self.engine), events)

    async def reevaluate(self, policies: list[Policy], vms: list[VmView], events: list[EngineEvent]) -> Evaluation:
        evaluation = evaluate(policies, vms)
        now = self._now()
        for policy in policies:
            result = evaluation[policy.name]
            if result.changed:
                for request in join_requests(policy, result.joined, events, now):
                    await self.bus.publish(BACKUP_REQUESTS, request, key=request.vm)
                    log.info("%s: backup of %s requested (%s)", request.requested_by, request.vm, request.request_id)
                log.info("policy %s: VMs joined: %s; left: %s", policy.name,
                         ", ".join(vm.name for vm in result.joined) or "none", ", ".join(result.left) or "none")
            await apply_result(self.store, self.bus, policy, result, reported=self._reported)
        return evaluation
