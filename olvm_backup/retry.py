"""Retry with exponential backoff and a deadline, written once, and every retry budget of the product by name.

Each external dependency is retried in one layer: its adapter (engine, imageio, object store, Kafka), under
its policy below. Only errors marked `retriable` are retried; CancelledError always propagates. An adapter
whose budget is spent raises `GaveUp` (its family's: EngineGaveUp is an EngineError, StoreGaveUp a StoreError),
which is not retriable: nobody above it tries the same request again, and the consumer loop dead-letters the
record at once. No budget is written anywhere else (tests/olvm_backup/test_retry.py checks).
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, TypeVar

from . import metrics
from .errors import BackupError, GaveUp

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long one kind of request is tried: `attempts` tries in all, none started after
    `deadline` seconds, waits doubling from `base_delay` up to `max_delay` (with jitter)."""

    name: str
    attempts: int
    deadline: float
    base_delay: float = 0.2
    max_delay: float = 5.0


# The budgets. A request is tried at most `attempts` times in all: no layer above its adapter retries it.
ENGINE = RetryPolicy("engine", attempts=6, deadline=120.0)
ENGINE_CREATE = RetryPolicy("engine create", attempts=3, deadline=120.0)  # a retried VM import may make a twin
ENGINE_START = RetryPolicy("engine start", attempts=6, deadline=300.0)  # a backup or transfer behind a lock
ENGINE_LOOKUP = RetryPolicy("engine lookup", attempts=2, deadline=120.0)  # only informs: not worth a long wait
ENGINE_CHECK = RetryPolicy("engine check", attempts=1, deadline=10.0)  # `status`: tells at once, waits out nothing
ENGINE_TIDY = RetryPolicy("engine tidy", attempts=2, deadline=60.0)  # housekeeping: the next backup tries again
# Snapshot create and remove: the engine answers 409 while the VM's other snapshot work (a creation, a merge) holds
# its lock, which can last minutes.
ENGINE_SNAPSHOT = RetryPolicy("engine snapshot", attempts=12, deadline=600.0, max_delay=15.0)
# The scheduler's reads of the inventory and the event feed: a few quick tries, then the feed reports the engine
# unreachable and tries again at its next poll, one interval later (policy/tagfeed.py).
ENGINE_POLL = RetryPolicy("engine poll", attempts=3, deadline=30.0)
IMAGEIO = RetryPolicy("imageio", attempts=4, deadline=60.0)
OBJECT_STORE = RetryPolicy("object store", attempts=5, deadline=60.0)
KAFKA_CONNECT = RetryPolicy("Kafka connect", attempts=10, deadline=30.0)
KAFKA_JOIN = RetryPolicy("Kafka join", attempts=10, deadline=60.0)
DEAD_LETTER = RetryPolicy("dead letter", attempts=10, deadline=120.0)
# The consumer loop's retry of a handler, for a retriable error that no adapter owns (a chunk's topic not
# there yet, a record another service has still to produce). An adapter's GaveUp is never retried here.
HANDLER = RetryPolicy("handler", attempts=3, deadline=120.0)
# Transfers one disk may have in one backup when imageio loses their tickets (the first, then re-opens); none is
# re-opened later than `deadline` seconds after the disk's first lost ticket. Past either, the backup fails.
TRANSFER_REOPEN = RetryPolicy("transfer re-open", attempts=3, deadline=600.0)

POLICIES = (ENGINE, ENGINE_CREATE, ENGINE_START, ENGINE_LOOKUP, ENGINE_CHECK, ENGINE_TIDY, ENGINE_SNAPSHOT, ENGINE_POLL,
            IMAGEIO, OBJECT_STORE, KAFKA_CONNECT, KAFKA_JOIN, DEAD_LETTER, HANDLER, TRANSFER_REOPEN)


def is_retriable(error: BaseException) -> bool:
    return bool(getattr(error, "retriable", False))


async def retry(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    policy: RetryPolicy,
    retriable: Callable[[BaseException], bool] = is_retriable,
    gave_up: type[GaveUp] = GaveUp,
) -> T:
    """Run `operation` until it succeeds, fails for good, or spends the policy's budget; then `gave_up` (the
    adapter's family's GaveUp), chained to the last error (whose message it repeats)."""
    start = time.monotonic()
    for attempt in range(1, policy.attempts + 1):
        try:
            return await operation()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            elapsed = time.monotonic() - start
            if not retriable(e):
                raise
            if attempt == policy.attempts or elapsed >= policy.deadline:
                metrics.GAVE_UP.labels(policy.name).inc()
                raise gave_up(str(e), last=e, what=what, attempts=attempt, seconds=round(elapsed, 1),
                              error_type=type(e).__name__) from e
            delay = min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
            delay = min(delay, max(0.0, policy.deadline - elapsed))
            log.warning("%s failed (attempt %d/%d), retrying in %.1fs: %s", what, attempt, policy.attempts, delay, e)
            metrics.RETRIES.labels(policy.name).inc()
            await asyncio.sleep(delay)
    raise BackupError(f"{what}: no attempt made")  # only when attempts < 1
