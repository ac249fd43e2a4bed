"""Where a backup's time went: steps timed as they run, reported in the order they run."""
from __future__ import annotations

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
