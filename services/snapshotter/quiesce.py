"""How consistent a backup asks the guest's file systems to be, and what the backup says about it.

The engine (4.4.4 and later) freezes a running VM's file systems while it takes
the backup's checkpoint, whenever the guest agent runs; a failed freeze only
warns, unless the backup was started with `require_consistency`, which makes
it fail instead. A request's `quiesce` (the default) asks for that whenever
there is an agent to freeze with; `--no-quiesce` settles for what the engine
manages, crash-consistent at worst. A VM that is down has its disks at rest.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Consistency:
    require: bool  # start the engine backup with require_consistency
    says: str      # for the backup's events and summary


def plan_consistency(quiesce: bool, vm_status: str, guest_agent: bool) -> Consistency:
    if vm_status != "up":
        return Consistency(False, f"VM {vm_status}: its disks are at rest, nothing to freeze")
    if not guest_agent:
        return Consistency(False, "crash-consistent: no guest agent reports from the VM, so nothing can freeze its "
                                  "file systems")
    if quiesce:
        return Consistency(True, "guest file systems frozen by the engine for the checkpoint (required: the backup "
                                 "fails if they cannot be)")
    return Consistency(False, "freeze not required (no quiesce): the engine freezes the guest if it can, and the "
                              "backup is crash-consistent if not")
