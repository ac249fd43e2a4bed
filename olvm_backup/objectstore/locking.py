"""Which objects S3 Object Lock protects, and until when: the one rule both stores apply when they write.

A restore point's data (packs, chunk indexes, manifests and OVFs) is locked for OLVM_OBJECT_LOCK_DAYS from its
write, so that neither the product nor stolen credentials delete or overwrite it before then. Nothing else is:
a backup's journal (jobs/) is deleted when its backup ends, and the repository's identity and key slots must stay
removable (a key that leaked is removed at once, not in 30 days).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from ..config import S3Settings

LOCKED_PREFIXES = ("packs/", "index/", "backups/")
MODES = ("GOVERNANCE", "COMPLIANCE")


@dataclass(frozen=True)
class Retention:
    """An object's Object Lock retention: `until` (UTC, whole seconds) and the mode, GOVERNANCE (a user with
    s3:BypassGovernanceRetention may shorten or lift it) or COMPLIANCE (no one can)."""

    mode: str
    until: datetime

    def holds(self, now: datetime) -> bool:
        return self.until > now

    def describe(self, now: datetime) -> str:
        """'locked until 2026-12-30 14:03 UTC (compliance)', or what it was once its date has passed."""
        when = f"{self.until:%Y-%m-%d %H:%M} UTC ({self.mode.lower()})"
        return f"locked until {when}" if self.holds(now) else f"not locked (its retention ended {when})"


def lock_mode(settings: S3Settings) -> str:
    return settings.object_lock_mode.upper()


def retention_for(key: str, settings: S3Settings, now: datetime) -> Retention | None:
    """The retention an object written at `now` under `key` gets: None when locking is off or the key is not
    part of a restore point."""
    if settings.object_lock_days <= 0 or not key.startswith(LOCKED_PREFIXES):
        return None
    until = now.astimezone(timezone.utc).replace(microsecond=0) + timedelta(days=settings.object_lock_days)
    return Retention(lock_mode(settings), until)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
