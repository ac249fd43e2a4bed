"""How a command's run is judged and said (pure): its exit code against the codes to ignore, its stderr against the
spec's policy, a timeout always a failure; the output's tail for events and steps."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .spec import CommandSpec

TAIL_BYTES = 1000  # of stdout and of stderr, in events: enough to see why, never a whole log on a topic

Status = Literal["ok", "warned", "failed"]


@dataclass(frozen=True)
class Ran:
    """What the runner saw: exit code (None when killed at its timeout or never started), output, seconds taken."""

    exit_code: int | None
    stdout: bytes = b""
    stderr: bytes = b""
    duration: float = 0.0
    timed_out: bool = False
    error: str = ""  # could not run at all (no such program, the guest refused the login, host key mismatch...)


@dataclass(frozen=True)
class CommandResult:
    phase: str
    where: str
    name: str
    status: Status
    message: str  # one line: what happened, for the events and a failed backup's message
    exit_code: int | None
    duration: float
    stdout_tail: str
    stderr_tail: str

    def detail(self) -> dict:
        """The event's `detail.command`."""
        return {"phase": self.phase, "where": self.where, "name": self.name, "status": self.status,
                "exit_code": self.exit_code, "duration": round(self.duration, 3), "stdout_tail": self.stdout_tail,
                "stderr_tail": self.stderr_tail}


def tail(data: bytes, limit: int = TAIL_BYTES) -> str:
    text = data.decode(errors="replace").strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def judge(spec: CommandSpec, ran: Ran) -> CommandResult:
    stderr = tail(ran.stderr)
    where = f"{spec.where} command {spec.label!r} ({spec.phase})"
    last_line = stderr.splitlines()[-1] if stderr else ""

    def result(status: Status, message: str) -> CommandResult:
        return CommandResult(spec.phase, spec.where, spec.label, status, message, ran.exit_code, ran.duration,
                             tail(ran.stdout), stderr)

    if ran.error:
        return result("failed", f"{where} could not run: {ran.error}")
    if ran.timed_out:
        return result("failed", f"{where} still running after its timeout of {spec.timeout:g}s: killed"
                      + (f"; stderr: {last_line}" if last_line else ""))
    code = ran.exit_code
    why = f"; stderr: {last_line}" if last_line else ""
    if code != 0:
        if code is not None and code in spec.ignore_exit:
            return result("warned", f"{where} exited {code}, an exit code it ignores{why}")
        return result("failed", f"{where} exited {code}{why}")
    if stderr and spec.stderr == "fail":
        return result("failed", f"{where} wrote to stderr (stderr: fail): {last_line}")
    if stderr and spec.stderr == "warn":
        return result("warned", f"{where} wrote to stderr: {last_line}")
    return result("ok", f"{where} ran in {ran.duration:.2f}s")
