"""Child processes of the simulator: started with a deadline, stopped for good."""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SimProcessError(RuntimeError):
    pass


async def start(name: str, argv: list[str], *, log: Path, ready, timeout: float = 30.0) -> asyncio.subprocess.Process:
    """Start a process in its own session and wait until ready() is true; fail with its log tail otherwise."""
    out = open(log, "ab")
    try:
        proc = await asyncio.create_subprocess_exec(*argv, stdout=out, stderr=subprocess.STDOUT,
                                                    stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        out.close()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not ready():
        if proc.returncode is not None or loop.time() > deadline:
            await stop(proc)
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise SimProcessError(f"{name} did not start (exit {proc.returncode}): {tail}")
        await asyncio.sleep(0.05)
    return proc


async def stop(proc: asyncio.subprocess.Process, timeout: float = 10.0) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


def run(*argv: str, input: bytes | None = None) -> str:
    """A qemu tool run to completion; its stderr in the error."""
    r = subprocess.run(argv, input=input, capture_output=True)
    if r.returncode != 0:
        raise SimProcessError(f"{' '.join(argv[:3])}… failed: {r.stderr.decode(errors='replace').strip()}")
    return r.stdout.decode(errors="replace")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0
