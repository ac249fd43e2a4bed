"""Running coroutines side by side while failing the way a sequential loop would: with the first real error
itself, not an ExceptionGroup, once the others are cancelled and have finished their cleanup."""
from __future__ import annotations

import asyncio
from typing import Awaitable, TypeVar

T = TypeVar("T")


def first_failure(group: BaseExceptionGroup) -> BaseException:
    """The first error of a task group that is not a cancellation caused by it."""
    return next((e for e in group.exceptions if not isinstance(e, asyncio.CancelledError)), group)


async def side_by_side(*steps: Awaitable[T]) -> list[T]:
    """Every step's result in order; if one fails, the others are cancelled and awaited, and its error raised."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(step) for step in steps]
    except BaseExceptionGroup as failed:
        raise first_failure(failed) from None
    return [task.result() for task in tasks]
