"""Where a backup's time went, step by step.

Reported in the outcome of the backup's "completed" and "failed" events and in
the CLI's summary, so an admin can tell the engine's waits (starting the
backup, opening and closing transfers) from imageio's extent queries and the
data's (reading, storing).
Two steps run side by side: the engine is released while the writers seal the
last packs, so the steps may add up to more than the backup's duration.
"""
from __future__ import annotations

import contextlib
import time
from typing import AsyncContextManager, AsyncIterator, Iterator, TypeVar

# The steps in the order they start; `engine release` overlaps the end of `read and store`.
ORDER = ("prepare", "before commands", "engine start", "after commands", "open transfers", "extents",
         "read and store", "engine release", "commit", "after-backup commands")
ENGINE_STEPS = ("engine start", "open transfers", "engine release")
T = TypeVar("T")


class StepTimes:
    def __init__(self) -> None:
        self._seconds: dict[str, float] = {}
        self._failures: list[tuple[BaseException, str]] = []  # (error, the step it left first)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Times the block, failed or not (a failed backup's event says how far it got, and how long each took)."""
        started = time.monotonic()
        try:
            with self.blame(name):
                yield
        finally:
            self.add(name, time.monotonic() - started)

    @contextlib.contextmanager
    def blame(self, name: str) -> Iterator[None]:
        """An error leaving the block failed step `name` (for a step timed with `add`). The innermost step it
        leaves is the one named: an outer step it passes through only carries it."""
        try:
            yield
        except Exception as e:  # not a cancellation: a sibling's failure cancels a step, it does not fail it
            if not any(seen is e for seen, _ in self._failures):
                self._failures.append((e, name))
            raise

    @contextlib.asynccontextmanager
    async def entering(self, name: str, manager: AsyncContextManager[T]) -> AsyncIterator[T]:
        """`async with manager`, whose entering is step `name`'s to fail (what fails inside it is not)."""
        async with contextlib.AsyncExitStack() as stack:
            with self.blame(name):
                value = await stack.enter_async_context(manager)
            yield value

    def failed_in(self, error: BaseException) -> str | None:
        """The step `error` (or an error it was raised from) failed, or None when it left no step."""
        chain: list[BaseException] = []
        cause: BaseException | None = error
        while cause is not None and not any(cause is c for c in chain):
            chain.append(cause)
            cause = cause.__cause__
        return next((name for c in chain for seen, name in self._failures if seen is c), None)

    def add(self, name: str, seconds: float) -> None:
        self._seconds[name] = self._seconds.get(name, 0.0) + seconds

    def in_order(self) -> dict[str, float]:
        """Seconds per step, in the order the steps run."""
        rank = {name: i for i, name in enumerate(ORDER)}
        return {name: round(self._seconds[name], 3)
                for name in sorted(self._seconds, key=lambda n: rank.get(n, len(ORDER)))}
