"""Where a backup's time went, step by step.

Reported in the outcome of the backup's "completed" and "failed" events and in
the CLI's summary, so an admin can tell the engine's waits (starting the
backup, opening and closing transfers) from the data's (reading, storing).
Two steps run side by side: the engine is released while the writers seal the
last packs, so the steps may add up to more than the backup's duration.
"""
from __future__ import annotations

import contextlib
import time
from typing import Iterator

# The steps in the order they start; `engine release` overlaps the end of `read and store`.
ORDER = ("prepare", "pre-backup hook", "engine start", "open transfers", "read and store", "engine release",
         "commit")
ENGINE_STEPS = ("engine start", "open transfers", "engine release")


class StepTimes:
    def __init__(self) -> None:
        self._seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Times the block, failed or not (a failed backup's event says how far it got, and how long each took)."""
        started = time.monotonic()
        try:
            yield
        finally:
            self.add(name, time.monotonic() - started)

    def add(self, name: str, seconds: float) -> None:
        self._seconds[name] = self._seconds.get(name, 0.0) + seconds

    def in_order(self) -> dict[str, float]:
        """Seconds per step, in the order the steps run."""
        rank = {name: i for i, name in enumerate(ORDER)}
        return {name: round(self._seconds[name], 3)
                for name in sorted(self._seconds, key=lambda n: rank.get(n, len(ORDER)))}
