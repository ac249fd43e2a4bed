"""Retention: which restore points of one VM a set of rules keeps, and why (pure; prune acts on it).

The rules are Proxmox Backup Server's, in its order: keep-last, keep-hourly, -daily, -weekly (ISO weeks, Monday
to Sunday), -monthly, -yearly; then restic's keep-within (every restore point within a duration of the newest).
A period rule keeps the newest restore point of each of its N most recent periods that hold one; periods with no
restore point do not count, and a period an earlier rule already kept a restore point in is passed over (it
neither counts nor keeps a second one). A restore point kept by any rule stays.

Whatever the rules say, these are never removed, each with its reason:
- the newest restore point of the VM: the base of its next incremental;
- a protected one (`olvm-backup protect`);
- one in use (a running restore, export, verify or network export names it).
With no rule at all nothing is removed: an empty policy is not "keep nothing".
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Callable, Iterable

from .errors import BackupError

PERIODS: dict[str, Callable[[datetime], str]] = {
    "hourly": lambda t: t.strftime("%Y-%m-%d %H:00"),
    "daily": lambda t: t.strftime("%Y-%m-%d"),
    "weekly": lambda t: "%d-W%02d" % t.isocalendar()[:2],
    "monthly": lambda t: t.strftime("%Y-%m"),
    "yearly": lambda t: t.strftime("%Y"),
}
UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


class RetentionError(BackupError):
    template = "retention: {reason}"


@dataclass(frozen=True)
class Rules:
    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within: float = 0.0  # seconds before the newest restore point

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 0:
                raise RetentionError(f"keep-{f.name} must be 0 or more, not {getattr(self, f.name)}")

    @property
    def empty(self) -> bool:
        return not any(getattr(self, f.name) for f in fields(self))

    def describe(self) -> str:
        parts = [f"keep-{f.name} {getattr(self, f.name)}" for f in fields(self)
                 if f.name != "within" and getattr(self, f.name)]
        if self.within:
            parts.append(f"keep-within {format_duration(self.within)}")
        return ", ".join(parts) or "no rule (keep everything)"


def parse_duration(text: str) -> float:
    """'36h', '7d', '2w', '1y', '90m' -> seconds; a unit is required (a bare number is ambiguous)."""
    m = re.fullmatch(r"\s*(\d+)\s*([mhdwy])\s*", text or "")
    if not m:
        raise RetentionError(f"{text!r} is not a duration: a number and one of m, h, d, w, y (e.g. 7d)")
    return int(m.group(1)) * UNITS[m.group(2)]


def format_duration(seconds: float) -> str:
    for unit in ("y", "w", "d", "h", "m"):
        if seconds >= UNITS[unit] and seconds % UNITS[unit] == 0:
            return f"{int(seconds // UNITS[unit])}{unit}"
    return f"{int(seconds)}s"


@dataclass(frozen=True)
class Point:
    """A restore point as retention sees it."""

    backup_id: str
    completed_at: float  # UNIX seconds
    protected: bool = False


@dataclass
class Decision:
    point: Point
    keep: bool
    reasons: list[str] = field(default_factory=list)  # every rule or guard that keeps it; empty when removed


def decide(points: Iterable[Point], rules: Rules, *, in_use: frozenset[str] = frozenset(),
           tz: timezone = timezone.utc) -> list[Decision]:
    """One VM's restore points, newest first, each kept (with every reason) or removed. `tz` is where days and
    weeks begin (UTC unless told)."""
    ordered = sorted(points, key=lambda p: p.completed_at, reverse=True)
    out = {p.backup_id: Decision(p, False) for p in ordered}
    if not ordered:
        return []
    keep = lambda p, why: (out[p.backup_id].reasons.append(why), setattr(out[p.backup_id], "keep", True))
    keep(ordered[0], "newest (the base of the next incremental)")
    for p in ordered:
        if p.protected:
            keep(p, "protected")
        if p.backup_id in in_use:
            keep(p, "in use")
    if rules.empty:
        for d in out.values():
            d.keep = True
            d.reasons.append("no retention rule")
        return list(out.values())

    # PBS's marking: a restore point marked by a rule (kept, or passed over as an older one of a period already
    # kept) is not looked at again by a later rule.
    marked: set[str] = set()
    for p in ordered[:rules.last]:
        keep(p, "keep-last")
        marked.add(p.backup_id)
    for name, period_of in PERIODS.items():
        count = getattr(rules, name)
        if not count:
            continue
        when = lambda p, period_of=period_of: period_of(datetime.fromtimestamp(p.completed_at, tz))
        covered = {when(p) for p in ordered if p.backup_id in marked and out[p.backup_id].keep}
        seen: set[str] = set()
        for p in ordered:
            if p.backup_id in marked:
                continue
            period = when(p)
            if period in covered:
                continue
            if period in seen:
                marked.add(p.backup_id)  # an older one of a period this rule kept: this rule removes it
                continue
            if len(seen) >= count:
                break
            seen.add(period)
            keep(p, f"keep-{name} ({period})")
            marked.add(p.backup_id)
    if rules.within:
        newest = ordered[0].completed_at
        for p in ordered:
            if newest - p.completed_at <= rules.within:
                keep(p, f"keep-within {format_duration(rules.within)}")
    return list(out.values())
