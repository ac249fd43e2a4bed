"""A disk whose imageio ticket goes away mid-backup (it expired, or was removed on the host).

Readers report each task whose ticket imageio no longer knows (`TransferGone`). For a report about a disk's
current transfer, the transfer is re-opened on the same engine backup and the disk's unfinished tasks are sent
again with the new URL, at most `retry.TRANSFER_REOPEN` transfers per disk; past that, or when no transfer can
be opened, the backup fails at once, naming the disk, the ticket and the transfer. A report about a transfer
already replaced is dropped: its task was sent again with the replacement. (The tracker drops, before this, a
report on a task that has its result: a late copy after the snapshotter ended the transfer itself.)
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable
from urllib.parse import urlparse

from olvm_backup.engine.cbt import TransferInfo
from olvm_backup.errors import BackupError
from olvm_backup.retry import TRANSFER_REOPEN
from schemas import TransferGone

from .plan import OpenDisk

log = logging.getLogger(__name__)


class TicketLost(BackupError):
    template = "disk {disk}: imageio ticket {ticket} of transfer {transfer_id} is gone, {reason} (imageio said: {said})"


def ticket_of(url: str) -> str:
    """The ticket id in a transfer URL (https://HOST:54322/images/TICKET)."""
    return urlparse(url).path.rstrip("/").rsplit("/", 1)[-1]


class Reopener:
    """The current transfer of each disk of a backup, and how often each was lost."""

    def __init__(self, opened: list[OpenDisk], *,
                 reopen: Callable[[str, TransferInfo], Awaitable[TransferInfo]],
                 resend: Callable[[str, TransferInfo], Awaitable[int]],
                 tell: Callable[[str], Awaitable[None]]) -> None:
        """`reopen(disk_id, old)` ends the old transfer and opens (and journals) another; `resend(disk_id, new)`
        publishes the disk's tasks that have no result again with the new transfer, returning how many;
        `tell(text)` reports to the backup's events."""
        self._current = {d.plan.disk.disk_id: d.transfer for d in opened}
        self._names = {d.plan.disk.disk_id: d.plan.disk.name for d in opened}
        self._reopen, self._resend, self._tell = reopen, resend, tell
        self._lost: dict[str, tuple[int, float]] = {}  # disk id -> (transfers lost, when the first was)

    def transfer(self, disk_id: str) -> TransferInfo:
        return self._current[disk_id]

    def live(self, reports: list[TransferGone]) -> dict[str, TransferGone]:
        """Per disk, one report about its current transfer; reports about transfers already replaced are dropped."""
        return {r.disk_id: r for r in reports
                if r.disk_id in self._current and r.transfer_url == self._current[r.disk_id].transfer_url}

    async def on_lost(self, reports: list[TransferGone]) -> None:
        for disk_id, report in self.live(reports).items():
            old = self._current[disk_id]
            lost, first = self._lost.get(disk_id, (0, time.monotonic()))
            lost += 1
            self._lost[disk_id] = (lost, first)
            failed = dict(disk=self._names[disk_id], ticket=ticket_of(old.transfer_url), transfer_id=old.transfer_id,
                          said=report.error)
            if lost >= TRANSFER_REOPEN.attempts:
                raise TicketLost(f"and {lost} of its transfers were lost in this backup (at most "
                                 f"{TRANSFER_REOPEN.attempts} are opened per disk)", **failed)
            if time.monotonic() - first > TRANSFER_REOPEN.deadline:
                raise TicketLost(f"and {lost} of its transfers were lost in {time.monotonic() - first:.0f}s (none is "
                                 f"re-opened later than {TRANSFER_REOPEN.deadline:.0f}s after the first)", **failed)
            try:
                new = await self._reopen(disk_id, old)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                raise TicketLost(f"and no other transfer could be opened: {e}", **failed) from e
            self._current[disk_id] = new
            sent = await self._resend(disk_id, new)
            text = (f"disk {failed['disk']}: imageio ticket {failed['ticket']} of transfer {old.transfer_id} is gone; "
                    f"opened transfer {new.transfer_id} and sent its {sent} unfinished read task(s) again")
            log.warning("%s (imageio said: %s)", text, report.error)
            await self._tell(text)
