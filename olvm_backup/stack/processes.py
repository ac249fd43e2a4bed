"""Child processes we start and must stop: each in its own process group, its output in a log file."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

from ..errors import ProcessStartError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def split_hostport(address: str) -> tuple[str, int]:
    """'host:port' or 'scheme://host:port/...' to (host, port)."""
    if "://" in address:
        address = address.split("://", 1)[1]
    address = address.split("/", 1)[0].split(",", 1)[0]
    host, _, port = address.rpartition(":")
    return host or "127.0.0.1", int(port)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


class ManagedProcess:
    """Start with `start()`, stop with `stop()`; a context manager that never leaves the group running."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_file: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        ready: Callable[[], bool] | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_file = log_file
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self._ready = ready
        self._ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> "ManagedProcess":
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            try:
                self.proc = subprocess.Popen(
                    self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env=self.env, cwd=self.cwd, start_new_session=True,
                )
            except OSError as e:
                raise ProcessStartError(e.strerror or str(e), name=self.name) from None
        deadline = time.monotonic() + self._ready_timeout
        while self._ready is not None and not self._ready():
            if self.proc.poll() is not None:
                raise ProcessStartError(f"exited with {self.proc.returncode}; log: {self.tail()}", name=self.name)
            if time.monotonic() > deadline:
                self.stop()
                raise ProcessStartError(f"not ready after {self._ready_timeout:.0f}s; log: {self.tail()}",
                                        name=self.name)
            time.sleep(0.1)
        return self

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the whole group, then SIGKILL what is left after `timeout`."""
        proc = self.proc
        if proc is None:
            return None
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # Children that outlived the leader are still in the group.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL the group at once: a crash, for the tests that prove nothing is lost by one."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def __enter__(self) -> "ManagedProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
