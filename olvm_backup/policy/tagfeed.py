"""The engine's tag events, followed from a durable cursor: what makes a VM tagged in the engine's web UI join its
policy within seconds.

The active scheduler runs `follow(feed, on_tag_events, interval=...)` as a task. Every `interval` seconds it reads
the events logged after the cursor, hands the tag events (TAG_CODES) to `on_tag_events`, then commits the cursor
past every event read, tag event or not. Delivery is at least once: a crash between the callback and the commit
hands the same events again after the restart, which is harmless as the requests they cause have ids derived from
their cause (policy, VM, slot). A restart of the feed neither misses nor replays events: the cursor is kept in the
object store at CURSOR_KEY, beside the policies, so another scheduler instance taking over reads on from it.

First start (no cursor in the store): the feed starts at the engine's newest event and writes that cursor at once;
it does NOT replay the engine's history (the scheduler evaluates every selection when it starts anyway, so the
tags as they are then are taken into account without their events).

An engine that cannot be reached: each read is retried with backoff by the engine adapter (retry.py ENGINE_POLL);
when that budget is spent the poll fails, `status` is told (following=False and the error), and the next poll, one
interval later, tries again. The cursor stays where it was, so nothing logged meanwhile is missed.

The engine numbers events from a sequence but two transactions may commit out of order, so an event can appear
after one with a higher id was read; such an event is missed by the feed, and caught by the scheduler's periodic
evaluation of the selections (the feed makes the reaction fast, it is not the only path to it).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Awaitable, Callable, Iterable

from ..engine.connection import Engine
from ..engine.inventory import EngineEvent, events_since, latest_event_id
from ..errors import BackupError, ObjectNotFound
from ..objectstore.base import ObjectStore

log = logging.getLogger(__name__)

# The engine's AuditLogType codes for tags (ovirt-engine AuditLogType.java): USER_UPDATE_TAG 430, USER_ADD_TAG 432,
# USER_REMOVE_TAG 434, USER_ATTACH_TAG_TO_VM 440, USER_DETACH_VM_FROM_TAG 446.
USER_UPDATE_TAG, USER_ADD_TAG, USER_REMOVE_TAG = 430, 432, 434
USER_ATTACH_TAG_TO_VM, USER_DETACH_VM_FROM_TAG = 440, 446
TAG_CODES = frozenset({USER_ADD_TAG, USER_REMOVE_TAG, USER_ATTACH_TAG_TO_VM, USER_DETACH_VM_FROM_TAG, USER_UPDATE_TAG})

CURSOR_KEY = "scheduler/events.json"
CURSOR_MAJOR, CURSOR_MINOR = 1, 0


class CursorError(BackupError):
    """The stored cursor cannot be read: the feed does not guess where to start."""

    template = "the event feed's cursor {key}: {reason}"


@dataclass(frozen=True)
class FeedStatus:
    """What `olvm-backup status` shows of the feed. `following`: the last poll reached the engine;
    `last_event_id`: the cursor (the last engine event handled); `last_poll_at`: UNIX seconds of the last poll
    that succeeded; `error`: why the last poll failed (None when it did not)."""

    following: bool
    last_event_id: int | None
    last_poll_at: float | None
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


# -- pure parts -------------------------------------------------------------------------------------------------------

def tag_events(events: Iterable[EngineEvent]) -> list[EngineEvent]:
    """The tag events among `events`, in their order."""
    return [e for e in events if e.code in TAG_CODES]


def encode_cursor(last_event_id: int, at: float) -> bytes:
    return json.dumps({"v": [CURSOR_MAJOR, CURSOR_MINOR], "last_event_id": int(last_event_id), "at": at},
                      sort_keys=True).encode()


def decode_cursor(raw: bytes) -> int:
    """The last event id a stored cursor holds, or CursorError saying why it cannot be read."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise CursorError(f"unreadable ({e})", key=CURSOR_KEY) from None
    if not isinstance(doc, dict):
        raise CursorError("not a JSON object", key=CURSOR_KEY)
    version = doc.get("v")
    if not (isinstance(version, list) and version and isinstance(version[0], int)):
        raise CursorError(f"no format version (v: {version!r})", key=CURSOR_KEY)
    if version[0] != CURSOR_MAJOR:
        raise CursorError(f"format {version!r} is not readable by this build (major {CURSOR_MAJOR})", key=CURSOR_KEY)
    last = doc.get("last_event_id")
    if isinstance(last, bool) or not isinstance(last, int) or last < 0:
        raise CursorError(f"last_event_id must be a non-negative integer, not {last!r}", key=CURSOR_KEY)
    return last


# -- the feed ---------------------------------------------------------------------------------------------------------

class TagFeed:
    """Tag events after the durable cursor. `poll` reads, `commit` saves; one instance per active scheduler."""

    def __init__(self, engine: Engine, store: ObjectStore, *, max_events: int = 500,
                 clock: Callable[[], float] = time.time) -> None:
        self.engine, self.store, self.max_events, self.clock = engine, store, max_events, clock
        self._cursor: int | None = None  # the stored cursor, once read (or written on first start)
        self._seen: int | None = None  # the last event id the latest poll read (tag event or not)

    @property
    def cursor(self) -> int | None:
        """The committed cursor (None before the first poll)."""
        return self._cursor

    @property
    def last_seen(self) -> int | None:
        """The id of the last event the latest poll read: what `commit()` saves by default."""
        return self._seen

    async def _load(self) -> int:
        if self._cursor is None:
            try:
                self._cursor = decode_cursor(await self.store.get(CURSOR_KEY))
            except ObjectNotFound:
                start = await latest_event_id(self.engine)
                log.info("event feed: no cursor yet, starting after the engine's newest event %d "
                         "(history is not replayed)", start)
                await self._save(start)
        return self._cursor

    async def _save(self, last_id: int) -> None:
        await self.store.put(CURSOR_KEY, encode_cursor(last_id, self.clock()))
        self._cursor = last_id

    async def poll(self) -> list[EngineEvent]:
        """The tag events logged after the cursor, oldest first (at most `max_events` events are read per poll;
        the next poll reads on after `commit`)."""
        after = await self._load()
        events = await events_since(self.engine, after, self.max_events)
        self._seen = events[-1].id if events else after
        return tag_events(events)

    async def commit(self, last_id: int | None = None) -> None:
        """Save the cursor at `last_id` (default: the last event the latest poll read). It never goes back."""
        last_id = self._seen if last_id is None else last_id
        current = await self._load()
        if last_id is not None and last_id > current:
            await self._save(last_id)


async def follow(feed: TagFeed, on_tag_events: Callable[[list[EngineEvent]], Awaitable[None]], *, interval: float,
                 stop: asyncio.Event | None = None, status: Callable[[FeedStatus], None] | None = None) -> None:
    """Poll `feed` every `interval` seconds until `stop` is set (or the task is cancelled): tag events go to
    `on_tag_events`, then the cursor is committed past every event read. A poll, callback or commit that fails with
    one of the product's errors (an engine out of reach, a store that refuses) commits nothing, is reported to
    `status` and tried again one interval later; any other exception is a bug and ends the task."""
    stop = stop or asyncio.Event()
    last_poll_at: float | None = None

    def tell(following: bool, error: str | None) -> None:
        if status is not None:
            status(FeedStatus(following, feed.cursor, last_poll_at, error))

    while not stop.is_set():
        try:
            events = await feed.poll()
            last_poll_at = feed.clock()
            if events:
                await on_tag_events(events)
            await feed.commit()
        except BackupError as e:
            log.warning("event feed: %s (trying again in %.0f s)", e, interval)
            tell(False, str(e))
        else:
            tell(True, None)
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except asyncio.TimeoutError:
            pass
