"""A command on the backup node: its argument list executed (no shell), in a process group of its own so that a
timeout or a cancellation kills everything it started, not only its first process."""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

from .spec import RESERVED_ENV, SECRET_NAME, CommandSpec
from .verdict import Ran

KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL to the group


async def run_node(spec: CommandSpec, env: dict[str, str]) -> Ran:
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *spec.run, env={**inherited(os.environ), **dict(spec.env), **env}, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
    except OSError as e:
        return Ran(None, error=f"{spec.run[0]}: {e.strerror or e}", duration=time.monotonic() - started)
    communicate = asyncio.ensure_future(proc.communicate())
    try:
        stdout, stderr = await asyncio.wait_for(asyncio.shield(communicate), spec.timeout)
    except asyncio.TimeoutError:
        await _kill_group(proc)
        stdout, stderr = await _collected(communicate)
        return Ran(None, stdout, stderr, time.monotonic() - started, timed_out=True)
    except BaseException:  # cancelled: the command goes with the backup that ran it
        await asyncio.shield(_kill_group(proc))
        communicate.cancel()
        raise
    return Ran(proc.returncode, stdout, stderr, time.monotonic() - started)


def inherited(environ) -> dict[str, str]:
    """The service's environment a command gets: not its settings (OLVM_*: the S3 keys and passwords among them),
    nor the AWS client's, nor anything named like a secret."""
    return {k: v for k, v in environ.items()
            if not k.startswith((RESERVED_ENV, "AWS_")) and not SECRET_NAME.search(k)}


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM to the command's process group, SIGKILL after KILL_GRACE; the group, as a shell script's children
    hold its pipes open and would outlive a kill of the script alone."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proc.wait(), wait)
            if sig == signal.SIGTERM:
                # The leader is gone; its children may not be: the group gets SIGKILL all the same.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                return


async def _collected(communicate: asyncio.Future) -> tuple[bytes, bytes]:
    """What the killed command wrote; its pipes close once the whole group is gone."""
    try:
        out, err = await asyncio.wait_for(communicate, 5.0)
        return out or b"", err or b""
    except (asyncio.TimeoutError, Exception):
        communicate.cancel()
        return b"", b""
