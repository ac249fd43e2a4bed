"""What a backup asks of the guest's file systems, by the request's quiesce and what the engine says of the VM, and
what it says of them in the end."""
from __future__ import annotations

from services.snapshotter.quiesce import AT_REST, CRASH_CONSISTENT, FROZEN, UNKNOWN, plan_consistency


def test_a_freeze_is_required_only_where_a_guest_agent_can_freeze():
    assert plan_consistency(True, "up", guest_agent=True).require
    assert not plan_consistency(False, "up", guest_agent=True).require  # --no-quiesce
    assert not plan_consistency(True, "up", guest_agent=False).require  # nothing could freeze: not a failure
    assert not plan_consistency(True, "down", guest_agent=False).require  # disks at rest
    assert plan_consistency(True, "up", guest_agent=False).code == CRASH_CONSISTENT
    assert plan_consistency(True, "down", guest_agent=False).code == AT_REST
    assert plan_consistency(True, "up", guest_agent=True).code == FROZEN  # once ready, a required freeze worked
    assert plan_consistency(False, "up", guest_agent=True).code == UNKNOWN  # until the engine's events tell


def test_what_the_engine_said_of_the_freeze_is_what_the_backup_says():
    required = plan_consistency(True, "up", guest_agent=True).outcome("frozen")
    assert required.code == FROZEN and required.says.endswith("for the checkpoint (required)")
    best_effort = plan_consistency(False, "up", guest_agent=True)
    assert best_effort.outcome("frozen").code == FROZEN
    assert best_effort.outcome("failed").code == CRASH_CONSISTENT
    assert best_effort.outcome("failed").says.startswith("crash-consistent: the engine could not freeze")
    assert best_effort.outcome(None) == best_effort  # the engine's events said nothing: the plan stands
    down = plan_consistency(True, "down", guest_agent=False)
    assert not down.ask_engine and down.outcome(None) == down
