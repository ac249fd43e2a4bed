"""The scheduler's clock: real time, or a simulated one that tests and demos drive (OLVM_SCHEDULER_CLOCK_*).

Simulated now = start + speed x (real now - epoch). Every instance given the same start, speed and epoch reads
the same time, so a failover mid-day neither repeats nor skips a slot because two instances disagree.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Callable

from olvm_backup.config import SchedulerSettings, parse_instant


class Clock:
    def __init__(self, start: float | None = None, speed: float = 1.0, epoch: float | None = None, *,
                 real: Callable[[], float] = time.time) -> None:
        self._real = real
        self.simulated = start is not None
        self.speed = speed if self.simulated else 1.0
        self._start = start
        self._epoch = real() if epoch is None else epoch

    @classmethod
    def from_settings(cls, settings: SchedulerSettings, *, real: Callable[[], float] = time.time) -> "Clock":
        return cls(parse_instant(settings.clock_start), settings.clock_speed, parse_instant(settings.clock_epoch),
                   real=real)

    def timestamp(self) -> float:
        if self._start is None:
            return self._real()
        return self._start + self.speed * (self._real() - self._epoch)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp(), timezone.utc)

    def real_seconds(self, simulated: float) -> float:
        """How long `simulated` seconds of this clock take in real time (what to sleep)."""
        return simulated / self.speed

    def describe(self) -> str:
        return f"simulated, {self.speed:g}x real time" if self.simulated else "real time"
