"""A backup's pre/post commands (olvm_backup/commands): which run, at which phase, and what their results do.

The request carries its commands (a policy's, the VM's own in it, or the CLI's); the snapshotter's old global
hooks (OLVM_PRE_BACKUP_HOOK, OLVM_POST_BACKUP_HOOK) are node commands of the phases `before` and `after-backup`.

- `before`: before the engine backup starts (CBT: the engine freezes the guest at the checkpoint) or the snapshot
  is asked for. The commands run in order; the first that fails fails the backup with its message, before anything
  is asked of the engine.
- `after`: once the backup is ready (after the engine's thaw) or the snapshot is taken. Runs once `before` was
  reached, whatever ends the backup (failed, interrupted): an application held by a `before` is always let go. A
  failure is a warning: the backup's data is not worse for it.
- `after-backup`: once the backup ended, completed or failed ($OLVM_RESULT); a failure is a warning.

Each phase runs at most once per backup: a phase started is recorded in the job (and in its journal while there
is one) and never started again; a request delivered again does not run again at all (once.py). Each command's
result (status, exit code, duration, the tail of its output) is a `progress` event (`detail.command`) and each
phase a step of the backup's outcome.
"""
from __future__ import annotations

import asyncio
import logging
import shlex
from typing import TYPE_CHECKING, Awaitable, Callable

from olvm_backup.commands import CommandResult, CommandSpec, SpecError, for_phase, parse_spec, run_phase
from olvm_backup.errors import BackupError

if TYPE_CHECKING:
    from olvm_backup.config import Settings
    from schemas import BackupRequest

    from .journal import Journal
    from .steps import StepTimes

log = logging.getLogger(__name__)
STEP = {"before": "before commands", "after": "after commands", "after-backup": "after-backup commands"}


def held_note(phases: list[str]) -> str:
    """What a killed snapshotter's interrupted backup adds to its event when its `before` commands ran and its
    `after` did not: nobody let the guest's application go (the next run's `after` will)."""
    if "before" in phases and "after" not in phases:
        return ("; its before commands ran and its after commands did not: the guest's application may be held "
                "until the request's next run reaches its after commands")
    return ""


class CommandFailed(BackupError):
    template = "{reason}"


def request_specs(request: BackupRequest, settings: Settings) -> list[CommandSpec]:
    """The backup's commands: the global hooks' (settings) first, then the request's. SpecError names a bad one."""
    specs: list[CommandSpec] = []
    pipeline = settings.pipeline
    if pipeline.pre_backup_hook:
        specs.append(_hook("before", pipeline.pre_backup_hook))
    if pipeline.post_backup_hook:
        specs.append(_hook("after-backup", pipeline.post_backup_hook))
    for i, part in enumerate(getattr(request, "commands", None) or []):
        doc = {k: v for k, v in part.model_dump().items() if v is not None}
        specs.append(parse_spec(doc, f"request commands[{i}]"))
    return [s for s in specs if s.phase in STEP]  # restore phases belong to restores


def _hook(phase: str, command: str) -> CommandSpec:
    try:
        run = tuple(shlex.split(command))
    except ValueError as e:
        raise SpecError(f"cannot split {command!r} into arguments ({e})", where="OLVM_PRE/POST_BACKUP_HOOK") from None
    return CommandSpec(phase=phase, run=run, where="node", name=run[0].rsplit("/", 1)[-1] if run else "hook",
                       stderr="ignore")  # type: ignore[arg-type]


class BackupCommands:
    def __init__(self, specs: list[CommandSpec], *, steps: StepTimes,
                 event: Callable[..., Awaitable[None]], env: Callable[[], dict[str, str]]) -> None:
        self.specs = specs
        self.steps = steps
        self.event = event
        self.env = env
        self.ran: list[str] = []  # phases started, in order
        self.journal: Journal | None = None
        self.results: list[CommandResult] = []

    def __bool__(self) -> bool:
        return bool(self.specs)

    async def before(self) -> None:
        """Raises CommandFailed with the first failing command's message."""
        failed = await self._phase("before")
        if failed is not None:
            with self.steps.blame(STEP["before"]):  # the failed event names the step, as any step's failure
                raise CommandFailed(failed.message)

    async def after(self) -> None:
        await self._phase("after")

    async def ended(self, result: str) -> None:
        """Whatever ended the backup: `after` if `before` was reached and it did not run yet, then `after-backup`.
        Never raises for a command; shielded from the cancellation that may have ended the backup."""
        self.journal = None  # handed over or closed by now: saving it again would bring it back
        if "before" in self.ran and "after" not in self.ran:
            await asyncio.shield(self._phase("after", {"OLVM_RESULT": result}))  # how it ended before `after`
        await asyncio.shield(self._phase("after-backup", {"OLVM_RESULT": result}))

    async def _phase(self, phase: str, extra: dict[str, str] | None = None) -> CommandResult | None:
        """Runs the phase's commands once; returns the first failed one's result (the rest of the phase then does
        not run), None when all ran."""
        if phase in self.ran:
            return None
        self.ran.append(phase)
        if phase == "after" or for_phase(self.specs, phase):
            await self._journal(phase)  # `after` even without commands: the janitor then knows nothing is held
        if not for_phase(self.specs, phase):
            return None

        async def said(result: CommandResult) -> None:
            self.results.append(result)
            # A failure after `before` is a warning: the backup goes on (or has ended), its data no worse for it.
            failed = result.status == "failed" and phase == "before"
            prefix = "" if result.status == "ok" else "failed: " if failed else "warning: "
            await self.event("progress", prefix + result.message, detail={"command": result.detail()})

        with self.steps.step(STEP[phase]):
            return await run_phase(self.specs, phase, {**self.env(), **(extra or {})}, said)

    async def _journal(self, phase: str) -> None:
        journal = self.journal
        if journal is None or journal.entry.ended:
            return
        journal.entry.commands.append(phase)
        try:
            await journal.save()
        except Exception as e:  # the store is away: the job still knows (self.ran)
            log.warning("backup %s: could not journal its %s commands: %s", journal.entry.backup_id, phase, e)
