"""`olvm-backup status`: what runs and where, and whether each part answers."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ..config import Settings
from ..kafka.admin import list_topics
from ..objectstore import open_store
from .embedded import read_stack_file
from .processes import pid_alive


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
    except Exception as e:  # any failure to answer is what status reports
        return False, f"{type(e).__name__}: {e}"


async def _kafka(settings: Settings) -> str:
    topics = await list_topics(settings.kafka)
    return f"{len(topics)} topics"


async def _s3(settings: Settings) -> str:
    async with open_store(settings.s3, ensure_bucket=False) as store:
        await store.ping()
    return f"bucket {settings.s3.bucket} reachable"


async def collect(settings: Settings, timeout: float = 10.0) -> list[PartStatus]:
    parts: list[PartStatus] = []
    ok, detail = await _check(_kafka(settings), timeout)
    parts.append(PartStatus("broker", settings.kafka.bootstrap_servers, ok, detail))
    ok, detail = await _check(_s3(settings), timeout)
    parts.append(PartStatus("object store", settings.s3.endpoint_url, ok, detail))
    stack = read_stack_file(settings)
    if stack is None:
        parts.append(PartStatus("services", "-", False, f"no stack runs from {settings.data_dir} (olvm-backup up)"))
        return parts
    for name, info in stack["processes"].items():
        if name in ("broker", "object-store"):
            continue
        alive = pid_alive(info["pid"])
        parts.append(PartStatus(name, f"pid {info['pid']}", alive, "running" if alive else "not running"))
    return parts
