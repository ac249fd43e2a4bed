"""Multipart uploads nobody will finish: a writer killed mid-pack leaves one, and every S3 (AWS, MinIO, the
embedded store) keeps its parts, on disk and on the bill, until the upload is aborted.

No record says which uploads are live, so time decides: a pack's upload lasts seconds (a pack is sealed at most
MAX_PACK_AGE after it opens, and each part has the object store's retry budget), so one begun hours ago belongs to
no live writer. Begun by the store's clock and seen unfinished by ours: a store whose upload times cannot be
trusted (moto gives every upload the same date in 2010) must not make a live upload look old. The chunks of an
aborted upload are not lost: a killed writer's chunks are redelivered and go into another pack.
"""
from __future__ import annotations

import asyncio
import logging
import time

from ..errors import BackupError
from ..objectstore import ObjectStore, Upload

log = logging.getLogger(__name__)

ABANDONED_AFTER = 6 * 3600.0  # seconds since the upload began, by the store's clock: beyond any live pack upload
TIDY_EVERY = 3600.0  # seconds between two looks by a running writer; an upload is aborted at the second look
PACKS = "packs/"  # only packs go up in parts (packs.py)


class AbandonedUploads:
    """Looks at the store's unfinished pack uploads and aborts those that began more than `older_than` seconds
    ago and that an earlier look, `seen_for` seconds or more before, found unfinished already."""

    def __init__(self, store: ObjectStore, *, older_than: float = ABANDONED_AFTER,
                 seen_for: float = TIDY_EVERY) -> None:
        self._store = store
        self._older_than = older_than
        self._seen_for = seen_for
        self._first_seen: dict[str, float] = {}  # upload id -> when a look first found it (monotonic)

    async def sweep(self) -> list[Upload]:
        """One look: the uploads it aborted."""
        now, seen_now = time.time(), time.monotonic()
        current = [u async for u in self._store.uploads(PACKS)]
        self._first_seen = {u.upload_id: self._first_seen.get(u.upload_id, seen_now) for u in current}
        stale = [u for u in current if u.initiated < now - self._older_than
                 and self._first_seen[u.upload_id] <= seen_now - self._seen_for]
        for upload in stale:
            await self._store.abort_upload(upload)
            del self._first_seen[upload.upload_id]
            log.warning("aborted the multipart upload %s of %s, begun %.1f h ago and never finished (a killed "
                        "writer's)", upload.upload_id, upload.key, (now - upload.initiated) / 3600)
        return stale

    async def keep_sweeping(self) -> None:
        """A look now and every `seen_for` seconds after, until cancelled; a failed look waits for the next."""
        while True:
            try:
                await self.sweep()
            except BackupError as e:  # the store is away for a moment
                log.warning("could not look for abandoned multipart uploads: %s", e)
            await asyncio.sleep(self._seen_for)
