"""What a backup asks of the guest's file systems, by the request's quiesce and what the engine says of the VM."""
from __future__ import annotations

from services.snapshotter.quiesce import plan_consistency


def test_a_freeze_is_required_only_where_a_guest_agent_can_freeze():
    assert plan_consistency(True, "up", guest_agent=True).require
    assert not plan_consistency(False, "up", guest_agent=True).require  # --no-quiesce
    assert not plan_consistency(True, "up", guest_agent=False).require  # nothing could freeze: not a failure
    assert not plan_consistency(True, "down", guest_agent=False).require  # disks at rest
    assert "crash-consistent" in plan_consistency(True, "up", guest_agent=False).says
    assert "at rest" in plan_consistency(True, "down", guest_agent=False).says


def test_what_the_engine_said_of_the_freeze_is_what_the_backup_says():
    required = plan_consistency(True, "up", guest_agent=True)
    assert required.outcome("frozen").startswith("guest file systems frozen") and "(required)" in required.outcome(
        "frozen")
    best_effort = plan_consistency(False, "up", guest_agent=True)
    assert best_effort.outcome("frozen").startswith("guest file systems frozen")
    assert best_effort.outcome("failed").startswith("crash-consistent: the engine could not freeze")
    assert best_effort.outcome(None) == best_effort.says  # the engine's events said nothing: the plan stands
    down = plan_consistency(True, "down", guest_agent=False)
    assert not down.ask_engine and down.outcome(None) == down.says
