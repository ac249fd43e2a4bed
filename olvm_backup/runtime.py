"""The runtime every service shares: settings, logging, signals, clean shutdown.

`python -m services.<name>` calls `run_service(name, main)`; `main` gets the
settings and runs until cancelled, which SIGTERM and SIGINT do.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Awaitable, Callable

from .config import Settings, check_files, load_settings
from .errors import BackupError
from .logs import setup_logging
from .metrics.serving import serve as serve_metrics
from .secret import Secret, read_secret_file

log = logging.getLogger(__name__)

ServiceMain = Callable[[Settings], Awaitable[None]]


def secrets_of(settings: Settings) -> list[str]:
    """What logging masks: every secret setting, and the passphrase a password file holds."""
    values = [settings.s3.access_key, settings.s3.secret_key, settings.engine.password, settings.repository.password]
    if settings.repository.password_file:
        try:
            values.append(read_secret_file(settings.repository.password_file))
        except (OSError, UnicodeDecodeError):
            pass  # opening the repository says what is wrong with it
    return [v.reveal() for v in values if isinstance(v, Secret) and v]


async def _run(name: str, main: ServiceMain, settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    log.info("%s started", name)
    metrics = serve_metrics(settings.metrics, name)
    try:
        await main(settings)
    except asyncio.CancelledError:
        log.info("%s stopped", name)
    finally:
        if metrics is not None:
            metrics.close()


def _bounded_malloc(arenas: int = 2, mmap_threshold: int | None = None) -> None:
    """glibc gives each thread that allocates its own arena: two bound what freed buffers keep resident.
    After the first large free glibc also raises its mmap threshold (up to 32 MiB), so megabyte buffers then
    come from the heaps and stay resident, fragmented; a fixed `mmap_threshold` maps and unmaps them instead,
    at the price of page faults (the restorer, measured: 308 -> 262 MiB peak, ~1 s slower on 4 GiB).
    No-op off glibc."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, arenas)  # M_ARENA_MAX
        if mmap_threshold:
            libc.mallopt(-3, mmap_threshold)  # M_MMAP_THRESHOLD (setting it also stops the dynamic raise)
    except (OSError, AttributeError):
        pass


def run_service(name: str, main: ServiceMain, *, mmap_threshold: int | None = None) -> None:
    _bounded_malloc(mmap_threshold=mmap_threshold)
    try:
        settings = load_settings()
        check_files(settings)  # a missing CA file stops the service here, named, not each task later
    except BackupError as e:
        print(f"{name}: {e}", file=sys.stderr)
        sys.exit(2)
    setup_logging(settings.log_level, name, secrets_of(settings))
    try:
        asyncio.run(_run(name, main, settings))
    except BackupError as e:
        log.error("%s failed: %s", name, e)
        sys.exit(1)


async def consume_forever(settings: Settings, group: str, topics, handler) -> None:
    """The common service body: one bus, one consumer group member, `handler(bus, record, message)` per record."""
    from .kafka import Bus, Consumer  # imported here so the runtime does not need Kafka to parse settings

    async with Bus(settings.kafka, client_id=group) as bus:
        async with Consumer(settings.kafka, bus, topics, group, client_id=group) as consumer:
            await consumer.run(lambda record, where: handler(bus, record, where))
