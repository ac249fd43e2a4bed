"""Where a backup's time went: steps timed as they run, reported in the order they run."""
from __future__ import annotations

import asyncio
import contextlib

import pytest

from services.snapshotter.steps import StepTimes


def test_step_times_add_up_per_step_in_running_order():
    steps = StepTimes()
    steps.add("commit", 0.5)
    with steps.step("prepare"):
        pass
    steps.add("prepare", 1.0)
    steps.add("engine start", 2.0)
    try:
        with steps.step("read and store"):
            raise RuntimeError("a failed step is timed too")
    except RuntimeError:
        pass
    detail = steps.in_order()
    assert list(detail) == ["prepare", "engine start", "read and store", "commit"]
    assert 1.0 <= detail["prepare"] < 1.5 and detail["engine start"] == 2.0 and detail["commit"] == 0.5
    assert detail["read and store"] >= 0


async def test_a_failure_is_the_innermost_step_it_left():
    steps = StepTimes()
    with pytest.raises(RuntimeError) as inner:
        with steps.step("read and store"), steps.blame("engine release"):
            raise RuntimeError("gone")
    assert steps.failed_in(inner.value) == "engine release"
    with pytest.raises(ValueError) as wrapped:  # raised from a step's failure, outside any step
        try:
            with steps.step("commit"):
                raise KeyError("x")
        except KeyError as e:
            raise ValueError("wrapped") from e
    assert steps.failed_in(wrapped.value) == "commit"
    assert steps.failed_in(RuntimeError("left no step")) is None

    @contextlib.asynccontextmanager
    async def opens(fail_at: str):
        if fail_at == "enter":
            raise OSError("no start")
        yield "it"

    with pytest.raises(OSError) as entering:
        async with steps.entering("engine start", opens("enter")):
            pass
    assert steps.failed_in(entering.value) == "engine start"
    with pytest.raises(LookupError) as inside:  # what fails inside the entered manager is not its step's
        async with steps.entering("engine start", opens("body")) as value:
            assert value == "it"
            raise LookupError("later")
    assert steps.failed_in(inside.value) is None

    async def cancelled():
        with steps.step("open transfers"):
            await asyncio.sleep(10)
    task = asyncio.create_task(cancelled())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError) as cancel:
        await task
    assert steps.failed_in(cancel.value) is None  # cancelled by a sibling's failure, not failed
