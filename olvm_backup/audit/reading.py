"""Reading the audit trail from the object store: the objects of the days asked for, decoded and de-duplicated.

An object this build cannot read (another major) is left out and named, so one does not hide the rest.
"""
from __future__ import annotations

import asyncio
import logging
import time

from ..objectstore import ObjectStore
from .trail import DAY, PREFIX, Entry, TrailError, decode_batch, day_prefixes, dedupe

log = logging.getLogger(__name__)

READ_AT_ONCE = 8  # objects fetched side by side


async def read_trail(store: ObjectStore, since: float | None = None, now: float | None = None,
                     unreadable: list[str] | None = None) -> list[Entry]:
    """Every entry written since `since` (all of them without), once each, in the order written. The keys of
    objects that could not be read are added to `unreadable`."""
    now = time.time() if now is None else now
    # A day early: another host's clock may be a little behind this one's.
    prefixes = [PREFIX] if since is None else day_prefixes(since - DAY, now + DAY)
    keys = [info.key for prefix in prefixes async for info in store.list(prefix)]
    gate = asyncio.Semaphore(READ_AT_ONCE)

    async def read(key: str) -> list[Entry]:
        async with gate:
            raw = await store.get(key)
        try:
            return decode_batch(raw, key)
        except TrailError as e:
            log.error("%s", e)
            if unreadable is not None:
                unreadable.append(key)
            return []

    batches = await asyncio.gather(*(read(key) for key in sorted(keys)))
    return dedupe(entry for batch in batches for entry in batch)
