"""Retry with exponential backoff and a deadline, written once.

Only errors marked `retriable` are retried; CancelledError always propagates.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Awaitable, Callable, TypeVar

from .errors import BackupError

log = logging.getLogger(__name__)
T = TypeVar("T")


def is_retriable(error: BaseException) -> bool:
    return bool(getattr(error, "retriable", False))


async def retry(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    attempts: int = 5,
    deadline: float = 60.0,
    base_delay: float = 0.2,
    max_delay: float = 5.0,
    retriable: Callable[[BaseException], bool] = is_retriable,
) -> T:
    """Run `operation` until it succeeds, fails for good, or runs out of attempts or time."""
    start = time.monotonic()
    for attempt in range(1, attempts + 1):
        try:
            return await operation()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            elapsed = time.monotonic() - start
            if not retriable(e) or attempt == attempts or elapsed >= deadline:
                raise
            delay = min(max_delay, base_delay * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
            delay = min(delay, max(0.0, deadline - elapsed))
            log.warning("%s failed (attempt %d/%d), retrying in %.1fs: %s", what, attempt, attempts, delay, e)
            await asyncio.sleep(delay)
    raise BackupError(f"{what}: no attempt made")  # only when attempts < 1
