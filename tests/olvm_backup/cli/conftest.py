"""The CLI run in process, as its tests do."""
from __future__ import annotations

import contextlib

import pytest

from olvm_backup.cli import checks, policies, pruning
from tests.cli_env import root_logging_kept
from tests.twins import MemoryBus


@pytest.fixture(autouse=True)
def _logging_restored():
    with root_logging_kept():
        yield


@pytest.fixture
def bus(monkeypatch) -> MemoryBus:
    """Where the repository commands (prune, protect, gc, forget) publish, in memory; alice@host runs them."""
    bus = MemoryBus()

    @contextlib.asynccontextmanager
    async def open_events(settings, what):
        yield bus

    monkeypatch.setattr(pruning, "open_events", open_events)
    for module in (pruning, policies, checks):
        monkeypatch.setattr(module, "actor", lambda: "alice@host")
    return bus
