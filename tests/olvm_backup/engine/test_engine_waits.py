"""Waits on the engine: a wait that goes on is reported to whoever listens in its context (a backup's progress
events), and only there. The probe here is a plain function, as `wait_for` runs any probe on the engine thread;
no engine is needed to count polls."""
from __future__ import annotations

import asyncio

import pytest

from olvm_backup.config import EngineSettings
from olvm_backup.engine import Engine
from olvm_backup.engine import connection


async def test_a_long_wait_is_reported_in_its_own_context_only(monkeypatch):
    monkeypatch.setattr(connection, "REPORT_EVERY", 0.3)
    heard: list[str] = []
    polls = {"n": 0}

    def probe() -> int:
        polls["n"] += 1
        return polls["n"]

    async def say(text: str) -> None:
        heard.append(text)

    async def quiet_wait() -> None:  # another job's wait: nobody listens there
        await engine.wait_for(lambda: 0, lambda v: False, what="someone else's", deadline=0.8)

    engine = Engine(EngineSettings())
    try:
        other = asyncio.create_task(quiet_wait())
        with connection.waits_told_to(say):
            await engine.wait_for(probe, lambda n: n >= 10, what="backup b1 to become ready", deadline=30)
        with pytest.raises(connection.EngineDeadline):
            await other
    finally:
        await engine.close()
    assert heard, "a wait of over a second was reported"
    assert all(text.startswith("waiting for the engine: backup b1 to become ready (") for text in heard), heard
