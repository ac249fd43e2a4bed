"""One SDK connection on one dedicated thread: the SDK is synchronous and not thread-safe.

Every SDK failure becomes one of our typed errors, all EngineErrors: conflicts
(409, locked disks, a backup already running), 5xx and dropped connections are
EngineUnavailable (retriable, by `call` under its policy, and EngineGaveUp once
the budget is spent); 404 is EngineNotFound; other faults are final.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import logging
import time
from typing import Any, Awaitable, Callable, Iterator, TypeVar

import ovirtsdk4 as sdk

from .. import metrics
from ..config import EngineSettings
from ..errors import BackupError, GaveUp
from ..retry import ENGINE, RetryPolicy, retry

log = logging.getLogger(__name__)
T = TypeVar("T")

POLL_FIRST, POLL_GROWTH, POLL_MAX = 0.1, 1.2, 0.5  # seconds between polls: 0.1 s at first, 0.5 s after ~2 s
REPORT_EVERY = 10.0  # seconds between reports of a wait that goes on (a real engine can take minutes)

# Who hears of long waits on the engine: set per job (`waits_told_to`), and so seen by the tasks it starts, never by
# another job's.
wait_reporter: contextvars.ContextVar[Callable[[str, float], Awaitable[None]] | None] = contextvars.ContextVar(
    "engine_wait_reporter", default=None)


@contextlib.contextmanager
def waits_told_to(say: Callable[[str], Awaitable[None]]) -> Iterator[None]:
    """Within the block, a wait on the engine that goes on is told to `say` every REPORT_EVERY seconds (a job's
    progress events)."""
    async def report(what: str, elapsed: float) -> None:
        await say(f"waiting for the engine: {what} ({elapsed:.0f} s so far)")

    token = wait_reporter.set(report)
    try:
        yield
    finally:
        wait_reporter.reset(token)

_CONFLICT_WORDS = ("locked", "is during backup", "another", "in progress", "being", "try again")


class EngineError(BackupError):
    template = "engine: {reason}"


class EngineUnavailable(EngineError):
    """An outage or a conflict that passes (a lock, a backup in progress): retried by `Engine.call`."""

    retriable = True


class EngineGaveUp(GaveUp, EngineError):
    """The engine stayed away or busy until the call's budget was spent."""


class EngineNotFound(EngineError):
    template = "engine: {reason} (not found)"


class EngineDeadline(EngineError):
    template = "engine: {reason}"


def translate(error: Exception) -> Exception:
    if isinstance(error, sdk.AuthError):
        return EngineError(f"authentication failed: {error}")
    if isinstance(error, sdk.NotFoundError):
        return EngineNotFound(str(error))
    if isinstance(error, sdk.Error):
        code = getattr(error, "code", None)
        text = str(error)
        if code is None or code == 409 or (isinstance(code, int) and code >= 500):
            return EngineUnavailable(text)
        if code == 400 and any(w in text.lower() for w in _CONFLICT_WORDS):
            return EngineUnavailable(text)
        return EngineError(text)
    return error


class Engine:
    def __init__(self, settings: EngineSettings, *, timeout: int = 120) -> None:
        """`timeout`: seconds one HTTP request may take (a real engine's answers can take long; `status` waits less)."""
        self._settings = settings
        self._timeout = timeout
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        self._connection: sdk.Connection | None = None

    def _connect(self) -> sdk.Connection:
        if self._connection is None:
            s = self._settings
            if not s.url:
                raise EngineError("no engine configured: set OLVM_ENGINE_URL (and the user, password and CA file)")
            self._connection = sdk.Connection(
                url=s.url, username=s.username, password=s.password.reveal(),
                ca_file=s.ca_file or None, insecure=s.insecure, timeout=self._timeout, connections=1,
            )
        return self._connection

    @property
    def system(self):
        """The SDK's system service: only to be used inside functions passed to `call`."""
        return self._connect().system_service()

    async def call(self, fn: Callable[..., T], *args: Any, what: str = "engine call",
                   policy: RetryPolicy = ENGINE) -> T:
        """Run `fn(*args)` on the engine thread, retrying conflicts and outages with backoff."""
        loop = asyncio.get_running_loop()

        async def once() -> T:
            started = time.monotonic()
            try:
                return await loop.run_in_executor(self._executor, functools.partial(fn, *args))
            except Exception as e:
                error = translate(e)
                metrics.ENGINE_ERRORS.labels(type(error).__name__).inc()
                raise error from e
            finally:
                metrics.ENGINE_SECONDS.labels(policy.name).observe(time.monotonic() - started)

        return await retry(once, what=what, policy=policy, gave_up=EngineGaveUp)

    async def wait_for(self, probe: Callable[[], T], done: Callable[[T], bool], *, what: str,
                       deadline: float, failed: Callable[[T], str | None] | None = None) -> T:
        """Poll `probe` until `done`; every wait on the engine has a deadline. Polls often at first (most
        phases last well under a second, and a restore or backup waits on several in a row), then less."""
        started = time.monotonic()
        end, reported = started + deadline, started
        interval = POLL_FIRST
        while True:
            value = await self.call(probe, what=what)
            if done(value):
                return value
            if failed is not None and (reason := failed(value)):
                raise EngineError(f"{what}: {reason}")
            now = time.monotonic()
            if now > end:
                raise EngineDeadline(f"{what}: still not done after {deadline:.0f}s")
            if now - reported >= REPORT_EVERY and (report := wait_reporter.get()) is not None:
                reported = now
                await report(what, now - started)
            await asyncio.sleep(interval)
            interval = min(POLL_MAX, interval * POLL_GROWTH)

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(self._executor, connection.close)
            except Exception as e:  # logging out of a dead engine must not hide the real error
                log.debug("engine logout failed: %s", e)
        self._executor.shutdown(wait=False)

    async def __aenter__(self) -> "Engine":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.shield(self.close())
