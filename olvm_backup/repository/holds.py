"""Holds on restore points that prune must respect: protection by an admin, and use by a running job.

- `protected/<backup_id>`: written by `olvm-backup protect`, deleted by `unprotect`. While it exists prune keeps the
  restore point whatever the rules say (`forget` of one restore point is the admin's explicit word and is not held).
- `inuse/<backup_id>/<holder>`: written by a restore, verify, export or network export for as long as it runs, and
  refreshed every HOLD_REFRESH seconds. A marker not refreshed for HOLD_STALE seconds no longer counts, so a process
  killed without cleaning up stops holding its restore point by itself; no one has to find and delete its marker.

Both are JSON with a format version ({"v": [1, 0], ...}, schemas/FORMAT.md) and are not sealed in an encrypted
repository: they name only a backup id (already in clear in the catalog's keys, `backups/<vm>/<id>/`), a user and,
for protection, the admin's note; and they must stay readable by whoever decides what to delete, even a tool that
holds no key, since a hold that cannot be read would be a hold ignored. The note is said to be stored in clear.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from typing import AsyncIterator, Callable, Literal

from ..errors import BackupError, ObjectNotFound
from ..objectstore import ObjectStore

log = logging.getLogger(__name__)

PROTECTED_PREFIX = "protected/"
INUSE_PREFIX = "inuse/"
HOLD_REFRESH = 30.0   # seconds between refreshes of an in-use marker
HOLD_STALE = 120.0    # a marker not refreshed for this long is a dead process's: it no longer holds
HOLDS_MAJOR = 1
HOLDS_MINOR = 0

Use = Literal["restore", "verify", "export", "network export"]
USES: tuple[str, ...] = ("restore", "verify", "export", "network export")


class HoldError(BackupError):
    template = "restore point hold: {reason}"


def _checked_id(backup_id: str) -> str:
    """A backup id is one key segment: '/' would put a hold under another restore point's name."""
    if not backup_id or "/" in backup_id or backup_id in (".", ".."):
        raise HoldError(f"{backup_id!r} is not a restore point id")
    return backup_id


def protected_key(backup_id: str) -> str:
    return PROTECTED_PREFIX + _checked_id(backup_id)


def _encode(doc: dict) -> bytes:
    return json.dumps({"v": [HOLDS_MAJOR, HOLDS_MINOR], **doc}).encode()


def _decode(raw: bytes, key: str) -> dict:
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("v", [None])[0] != HOLDS_MAJOR:
            raise HoldError(f"{key}: format {doc.get('v') if isinstance(doc, dict) else '?'} is not readable by "
                            f"this build (major {HOLDS_MAJOR})")
        return doc
    except (ValueError, TypeError, AttributeError, IndexError) as e:
        raise HoldError(f"{key}: unreadable ({e})") from None


# --- protection ------------------------------------------------------------------------------------------------------

async def protect(store: ObjectStore, backup_id: str, by: str, note: str = "", *,
                  now: Callable[[], float] = time.time) -> None:
    """Mark a restore point protected (again: the newest note wins)."""
    await store.put(protected_key(backup_id), _encode({"by": by, "at": now(), "note": note}))


async def unprotect(store: ObjectStore, backup_id: str) -> bool:
    """Take protection off; False when the restore point was not protected."""
    key = protected_key(backup_id)
    if await store.head(key) is None:
        return False
    await store.delete(key)
    return True


async def protection(store: ObjectStore, backup_id: str) -> dict | None:
    """Who protected a restore point, when and why ({"by", "at", "note"}), or None."""
    key = protected_key(backup_id)
    try:
        return _decode(await store.get(key), key)
    except ObjectNotFound:
        return None


async def protected_ids(store: ObjectStore) -> set[str]:
    """Every protected restore point's id. Read from the keys alone: a marker exists or it does not, and one that
    cannot be decoded still protects."""
    return {info.key[len(PROTECTED_PREFIX):] async for info in store.list(PROTECTED_PREFIX)
            if "/" not in info.key[len(PROTECTED_PREFIX):]}


# --- in use ----------------------------------------------------------------------------------------------------------

def inuse_key(backup_id: str, holder: str) -> str:
    return f"{INUSE_PREFIX}{_checked_id(backup_id)}/{holder}"


@contextlib.asynccontextmanager
async def holding(store: ObjectStore, backup_id: str, what: str, by: str, *, refresh: float = HOLD_REFRESH,
                  now: Callable[[], float] = time.time) -> AsyncIterator[str]:
    """Hold a restore point in use for the duration of the block: the marker is written before the block runs
    (a failure to write it fails the job: unheld, prune could remove what it reads), refreshed every `refresh`
    seconds, and deleted when the block ends in any way. Yields the marker's key."""
    if what not in USES:
        raise HoldError(f"{what!r} is not a use of a restore point ({', '.join(USES)})")
    key = inuse_key(backup_id, f"{what.replace(' ', '-')}-{secrets.token_hex(6)}")
    doc = {"what": what, "by": by}
    await store.put(key, _encode({**doc, "alive_at": now()}))

    async def refresher() -> None:
        while True:
            await asyncio.sleep(refresh)
            try:
                await store.put(key, _encode({**doc, "alive_at": now()}))
            except Exception as e:  # a missed refresh is retried; past HOLD_STALE the hold lapses, and is said so
                log.warning("could not refresh the hold %s: %s", key, e)

    task = asyncio.create_task(refresher(), name=f"hold {key}")
    try:
        yield key
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        try:
            await asyncio.shield(store.delete(key))
        except Exception as e:  # the job's own outcome matters more; the marker lapses by itself
            log.warning("could not remove the hold %s (it lapses after %.0f s): %s", key, HOLD_STALE, e)


async def in_use_ids(store: ObjectStore, now: float | None = None, *, stale: float = HOLD_STALE) -> set[str]:
    """The restore points a running job holds: those with a marker refreshed within `stale` seconds of `now`. A
    marker that cannot be read counts (better kept than removed under a running restore)."""
    now = time.time() if now is None else now
    out: set[str] = set()
    async for info in store.list(INUSE_PREFIX):
        backup_id, _, holder = info.key[len(INUSE_PREFIX):].partition("/")
        if not holder or backup_id in out:
            continue
        try:
            doc = _decode(await store.get(info.key), info.key)
            alive = float(doc["alive_at"])
        except ObjectNotFound:
            continue  # ended since the listing
        except (HoldError, KeyError, TypeError, ValueError) as e:
            log.warning("%s", e)
            out.add(backup_id)
            continue
        if now - alive <= stale:
            out.add(backup_id)
    return out


async def clear_lapsed(store: ObjectStore, now: float | None = None, *, older: float = 86400.0) -> list[str]:
    """Delete in-use markers not refreshed for `older` seconds (a killed process's, long lapsed): they hold
    nothing already; this only keeps `inuse/` from growing. Returns the keys deleted."""
    now = time.time() if now is None else now
    gone = []
    async for info in store.list(INUSE_PREFIX):
        try:
            alive = float(_decode(await store.get(info.key), info.key)["alive_at"])
        except (ObjectNotFound, HoldError, KeyError, TypeError, ValueError):
            continue
        if now - alive > older:
            await store.delete(info.key)
            gone.append(info.key)
    return gone
