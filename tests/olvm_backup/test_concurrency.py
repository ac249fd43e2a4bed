"""Steps run side by side fail like a loop would: the first error itself, siblings cancelled and cleaned up."""
from __future__ import annotations

import asyncio

import pytest

from olvm_backup.errors import BackupError
from olvm_backup.concurrency import side_by_side


async def test_results_in_order():
    async def step(n: int, delay: float) -> int:
        await asyncio.sleep(delay)
        return n
    assert await side_by_side(step(1, 0.03), step(2, 0.0), step(3, 0.01)) == [1, 2, 3]


async def test_a_failure_is_raised_as_itself_after_the_others_cleaned_up():
    cleaned: list[str] = []

    async def slow(name: str) -> None:
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(0.01)  # cleanup that itself awaits, as cancelling a transfer does
            cleaned.append(name)

    async def failing() -> None:
        await asyncio.sleep(0.01)
        raise BackupError("transfer of disk b did not start")

    with pytest.raises(BackupError, match="disk b did not start"):
        await side_by_side(slow("a"), failing(), slow("c"))
    assert sorted(cleaned) == ["a", "c"]
