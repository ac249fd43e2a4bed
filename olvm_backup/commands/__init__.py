"""Pre/post commands for application-consistent backups, on the backup node or inside the guest over SSH.

spec.py: what a command is (parsed and checked, pure); verdict.py: how its run is judged (pure); node.py and
guest.py: running it; runner.py: the one call the services make. README "Pre/post commands" says how to use them.
"""
from .runner import run_command, run_phase
from .spec import (BACKUP_PHASES, PHASES, RESTORE_PHASES, CommandSpec, SpecError, for_phase, parse_cli, parse_spec,
                   parse_specs, spec_to_doc)
from .verdict import CommandResult

__all__ = ["BACKUP_PHASES", "PHASES", "RESTORE_PHASES", "CommandResult", "CommandSpec", "SpecError", "for_phase",
           "parse_cli", "parse_spec", "parse_specs", "run_command", "run_phase", "spec_to_doc"]
