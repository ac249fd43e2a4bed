"""What the repository deletes, as RepositoryEvents on `repository.events` (the audit trail): one per restore point
forgotten or pruned, one per pack gc deleted and a summary per collection, one per protection set or lifted. Each
says what, why (the rules, the command, the collection) and who. Shared by the CLI and the scheduler's runs."""
from __future__ import annotations

import time
from typing import Any, Callable, Protocol

from schemas.records import RepositoryAction, RepositoryEvent
from schemas.topics import REPOSITORY_EVENTS

from ..objectstore import ObjectStore
from ..retention import format_duration
from . import gc


class Publisher(Protocol):
    async def publish(self, topic: Any, record: Any, key: str | bytes | None = None) -> None: ...


async def publish(bus: Publisher, action: RepositoryAction, *, actor: str, backup_id: str | None = None,
                  vm: str | None = None, reason: str = "", detail: dict[str, Any] | None = None,
                  now: Callable[[], float] = time.time) -> RepositoryEvent:
    event = RepositoryEvent(action=action, backup_id=backup_id, vm=vm, reason=reason, actor=actor, at=now(),
                            detail=detail or {})
    key = backup_id or str((detail or {}).get("pack") or (detail or {}).get("gc_id") or action)
    await bus.publish(REPOSITORY_EVENTS, event, key=key)
    return event


async def publish_swept(bus: Publisher, store: ObjectStore, since: float, *, actor: str, grace: float) -> int:
    """A `pack_deleted` event for every pack of the condemned lists swept since `since` (this run's, a resumed one's
    included), read from their tombstones: so a run stopped by GcWaiting after sweeping an older list still says
    what it deleted. Returns how many."""
    count = 0
    for condemned in await gc.condemned_lists(store):
        if condemned.swept_at is None or condemned.swept_at < since:
            continue
        for pack, size in sorted(condemned.packs.items()):
            if pack in condemned.locked:
                continue
            await publish(bus, "pack_deleted", actor=actor, detail={"pack": pack, "size": size,
                                                                    "gc_id": condemned.gc_id},
                          reason=f"no restore point names it (gc {condemned.gc_id}, older than "
                                 f"{format_duration(grace)})")
            count += 1
    return count
