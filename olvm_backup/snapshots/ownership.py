"""Which snapshots olvm-backup made (pure). The product never removes, reverts or merges a snapshot it did not create.

A snapshot is ours when both say so: its description has our form, `olvm-backup <purpose> [<correlation id>]`, and
that correlation id is recorded in the repository (records.py) for the same VM. The description alone is not
enough: anyone can type it in the administration portal. The correlation id is also the one sent with the create
request, so the engine's events and jobs of the snapshot carry it too.

The purpose always starts with "by " (taken by hand) or "policy " (a snapshot policy's slot), never with an id: the
snapshot backup strategy's own snapshots are "olvm-backup <backup id> (request ...)" (services/snapshotter/
layers.py), and it removes what it finds in that form, so the two never take each other's snapshots.
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Container

PREFIX = "olvm-backup"
_FORM = re.compile(r"^olvm-backup (?P<purpose>.+) \[(?P<cid>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
                   r"[0-9a-f]{12})\]$")


def new_correlation_id() -> str:
    return str(uuid.uuid4())


def describe(purpose: str, correlation_id: str) -> str:
    """The description our snapshot gets: `olvm-backup policy hourly-snaps 2026-11-30T02:00Z [<id>]`."""
    text = f"{PREFIX} {' '.join(purpose.split())} [{correlation_id}]"  # one line, whatever an admin typed
    if correlation_of(text) != correlation_id:
        raise ValueError(f"{correlation_id!r} is not a correlation id (a UUID in lower case)")
    return text


def correlation_of(description: str | None) -> str | None:
    """The correlation id a description in our form carries; None for any other description."""
    m = _FORM.match(description or "")
    return m.group("cid") if m else None


def purpose_of(description: str | None) -> str:
    m = _FORM.match(description or "")
    return m.group("purpose") if m else ""


def is_ours(description: str | None, recorded: Container[str]) -> bool:
    """Our form, and its correlation id recorded for this VM (`recorded`: the VM's recorded correlation ids)."""
    cid = correlation_of(description)
    return cid is not None and cid in recorded


def not_ours_reason(description: str | None, recorded: Container[str]) -> str:
    """Why a snapshot is not ours, in words ('' when it is)."""
    cid = correlation_of(description)
    if cid is None:
        return "its description is not olvm-backup's: an administrator or another tool made it"
    if cid not in recorded:
        return (f"its description looks like olvm-backup's, but its correlation id {cid} is not recorded in the "
                "repository for this VM")
    return ""


BACKUP_PREFIX = PREFIX + " "  # what every snapshot of ours starts with (engine/snapshots.py's `prefix`)
# A snapshot backup's snapshot (services/snapshotter): "olvm-backup <backup id> (request <request id>)". Its restore
# point's manifest names it; these records do not.
_BACKUP_FORM = re.compile(r"^olvm-backup \S+ \(request .+\)$")


def owner_of(description: str | None, records: dict) -> str:
    """Who a snapshot is, in a word for listings: "policy NAME" or "by USER" (ours, recorded here), "backup" (in
    the form of a snapshot backup's, which keeps it for the VM's next incremental), or "" (not ours)."""
    cid = correlation_of(description)
    record = records.get(cid) if cid else None
    if record is not None:
        return f"policy {record.policy}" if record.policy else f"by {record.by}"
    if _BACKUP_FORM.match(description or ""):
        return "backup"
    return ""
