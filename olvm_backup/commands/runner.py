"""Run one command where its spec says and judge it: the one entry point the services call."""
from __future__ import annotations

import logging
from typing import Awaitable, Callable

from .node import run_node
from .spec import CommandSpec
from .verdict import CommandResult, judge

log = logging.getLogger(__name__)


async def run_command(spec: CommandSpec, env: dict[str, str]) -> CommandResult:
    """`env`: what olvm-backup tells the command (OLVM_VM, OLVM_BACKUP_ID, OLVM_PHASE...), over the spec's own."""
    if spec.where == "guest":
        from .guest import run_guest  # asyncssh only where a guest command runs
        ran = await run_guest(spec, env)
    else:
        ran = await run_node(spec, env)
    result = judge(spec, ran)
    # The command line is an admin's own text; the key file only by path. Never the environment's values.
    (log.info if result.status == "ok" else log.warning)("%s", result.message)
    return result


async def run_phase(specs: list[CommandSpec], phase: str, env: dict[str, str],
                    said: Callable[[CommandResult], Awaitable[None]]) -> CommandResult | None:
    """The phase's commands in order, each result handed to `said` (for the job's events); the first that fails
    ends the phase and is returned (None: all ran)."""
    for spec in (s for s in specs if s.phase == phase):
        result = await run_command(spec, {**env, "OLVM_PHASE": phase})
        await said(result)
        if result.status == "failed":
            return result
    return None
