"""Pre/post backup commands: run with a deadline, their failure reported, never silently ignored."""
from __future__ import annotations

import asyncio
import os
import shlex

from olvm_backup.errors import BackupError

HOOK_TIMEOUT = 300.0


class HookFailed(BackupError):
    template = "hook {command!r}: {reason}"


async def run_hook(command: str, env: dict[str, str]) -> None:
    proc = await asyncio.create_subprocess_exec(*shlex.split(command), env={**os.environ, **env},
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), HOOK_TIMEOUT)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise HookFailed(f"still running after {HOOK_TIMEOUT:.0f}s, killed", command=command) from None
    except asyncio.CancelledError:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        tail = output.decode(errors="replace").strip()[-500:]
        raise HookFailed(f"exited {proc.returncode}: {tail}", command=command)
