"""`olvm-backup status`: what runs and where, and whether each part answers."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ..config import Settings, check_files
from ..errors import BackupError
from ..kafka.admin import list_topics
from ..kafka.probe import answers
from ..objectstore import open_store
from .embedded import read_stack_file
from .processes import pid_alive
from .space import room


@dataclass(frozen=True)
class PartStatus:
    part: str
    where: str
    ok: bool
    detail: str


async def _check(coro, timeout: float) -> tuple[bool, str]:
    try:
        return True, str(await asyncio.wait_for(coro, timeout))
    except asyncio.TimeoutError:
        return False, f"no answer within {timeout:.0f}s"
    except BackupError as e:  # ours name what failed already
        return False, str(e)
    except Exception as e:  # any failure to answer is what status reports
        return False, f"{type(e).__name__}: {e}"


async def _kafka(settings: Settings) -> str:
    if not await answers(settings.kafka):  # at once, not after the admin client's connect budget
        raise BackupError("does not answer")
    topics = await list_topics(settings.kafka)
    return f"{len(topics)} topics"


async def _s3(settings: Settings) -> str:
    async with open_store(settings.s3, ensure_bucket=False) as store:
        await store.ping()
    return f"bucket {settings.s3.bucket} reachable"


async def _engine(settings: Settings, timeout: float) -> str:
    """Logs in and asks the version, as every service's first engine call does."""
    from ..engine.connection import Engine, EngineError
    from ..retry import ENGINE_CHECK

    check_files(settings)  # a missing CA file: named, not the TLS library's words for it
    async with Engine(settings.engine, timeout=int(timeout)) as engine:
        try:
            info = await engine.call(lambda: engine.system.get().product_info, what="log in",
                                     policy=ENGINE_CHECK)
        except EngineError as e:
            if "certificate" not in str(e).lower():
                raise
            raise BackupError(f"{e} (is OLVM_ENGINE_CA_FILE the engine's CA?)") from e
    version = info.version.full_version if info and info.version else "version unknown"
    return f"logged in as {settings.engine.username}; {info.name if info else 'engine'} {version}"


async def _scheduler(settings: Settings) -> str:
    """The active scheduler's own account (it writes it every tick): who leads, the event feed, the next run."""
    import time

    from ..policy.status import read_status, summary

    async with open_store(settings.s3, ensure_bucket=False) as store:
        ok, words = summary(await read_status(store), time.time())
    if not ok:
        raise BackupError(words)
    return words


def _masked(text: str, settings: Settings) -> str:
    from ..runtime import secrets_of

    for secret in secrets_of(settings):
        text = text.replace(secret, "***")
    return text


async def collect(settings: Settings, timeout: float = 10.0) -> list[PartStatus]:
    parts: list[PartStatus] = []
    ok, detail = await _check(_kafka(settings), timeout)
    parts.append(PartStatus("broker", settings.kafka.bootstrap_servers, ok, detail))
    ok, detail = await _check(_s3(settings), timeout)
    parts.append(PartStatus("object store", settings.s3.endpoint_url, ok, detail))
    if (disk := room(settings)) is not None:  # the embedded store's: a full one fails every backup
        parts.append(PartStatus("object store disk", *disk))
    if settings.engine.url:  # the services cannot work without it: a login that fails is a part down
        ok, detail = await _check(_engine(settings, timeout), timeout + 1)
        parts.append(PartStatus("engine", settings.engine.url, ok, _masked(detail, settings)))
    else:
        parts.append(PartStatus("engine", "-", True, "not configured (OLVM_ENGINE_URL): backups and restores need it"))
    ok, detail = await _check(_scheduler(settings), timeout)
    parts.append(PartStatus("scheduler", "scheduler/status.json", ok, detail))
    stack = read_stack_file(settings)
    if stack is None:
        parts.append(PartStatus("services", "-", False, f"no stack runs from {settings.data_dir} (olvm-backup up)"))
        return parts
    for name, info in stack["processes"].items():
        if name in ("broker", "object-store"):
            continue
        alive = pid_alive(info["pid"])
        metrics = f"; metrics {info['metrics']}" if info.get("metrics") else ""
        parts.append(PartStatus(name, f"pid {info['pid']}", alive, ("running" if alive else "not running") + metrics))
    return parts
