"""How consistent a backup asks the guest's file systems to be, and what the backup says about it.

The engine (4.4.4 and later) freezes a running VM's file systems while it takes
the backup's checkpoint, whenever the guest agent runs; a failed freeze only
warns, unless the backup was started with `require_consistency`, which makes
it fail instead. A request's `quiesce` (the default) asks for that whenever
there is an agent to freeze with; `--no-quiesce` settles for what the engine
manages, crash-consistent at worst. A VM that is down has its disks at rest.
Once the backup is ready, the engine's events under its correlation id tell
how the freeze went, and that is what the backup says.
"""
from __future__ import annotations

from dataclasses import dataclass, replace


# What a restore point's manifest says of its guest file systems (`consistency`; "" in formats 1.0 and 1.1).
FROZEN, CRASH_CONSISTENT, AT_REST, UNKNOWN = "frozen", "crash-consistent", "at rest", "unknown"
_FROZEN_SAYS = "guest file systems frozen by the engine for the checkpoint"


@dataclass(frozen=True)
class Consistency:
    require: bool  # start the engine backup with require_consistency
    code: str      # FROZEN, CRASH_CONSISTENT, AT_REST or UNKNOWN: for the manifest and the listing
    says: str      # for the backup's events and summary
    ask_engine: bool = False  # whether the engine's events may tell how the freeze went

    def outcome(self, freeze: str | None) -> "Consistency":
        """What the backup says once the engine's events told how the freeze went ("frozen", "failed" or None)."""
        if freeze == "frozen":
            required = " (required)" if self.require else ""
            return replace(self, code=FROZEN, says=_FROZEN_SAYS + required)
        if freeze == "failed":
            return replace(self, code=CRASH_CONSISTENT, says="crash-consistent: the engine could not freeze the "
                                                            "guest's file systems (its events say why)")
        return self


def plan_consistency(quiesce: bool, vm_status: str, guest_agent: bool) -> Consistency:
    if vm_status != "up":
        return Consistency(False, AT_REST, f"VM {vm_status}: its disks are at rest, nothing to freeze")
    if not guest_agent:
        return Consistency(False, CRASH_CONSISTENT, "crash-consistent: no guest agent reports from the VM, so nothing "
                                                    "can freeze its file systems")
    if quiesce:
        # Required: once the engine backup is ready, the freeze worked.
        return Consistency(True, FROZEN, f"{_FROZEN_SAYS} (required: the backup fails if they cannot be)",
                           ask_engine=True)
    return Consistency(False, UNKNOWN, "freeze not required (no quiesce): the engine freezes the guest if it can, and "
                                       "the backup is crash-consistent if not", ask_engine=True)
