"""An iSCSI target over an NBD export: Debian tgt's user-space daemon (tgtd), one per export.

tgtd needs a file for its backing store: `nbdfuse` (libnbd-bin) mounts the NBD export as one file over FUSE, and
the target's LUN 1 is that file (read-only when the export is: tgtd then opens it read-only and says so). Each
export has its own tgtd on its own control port (`-C`, the socket /var/run/tgtd/socket.N) and portal, so exports
and a system tgtd never see each other's targets. Initiators are allowed by name (IQN) or address (an IP, a CIDR
range, or ALL); anyone else is refused at login.
"""
from __future__ import annotations

import fcntl
import os
import random
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import BackupError
from ..stack.processes import ManagedProcess, port_open

IQN_PREFIX = "iqn.2026-01.olvm-backup"
TID = 1
LUN = 1
CONTROL_DIR = Path("/var/run/tgtd")
CONTROL_PORT_MAX = 32768  # tgtd refuses a -C above 32767


class IscsiError(BackupError):
    template = "iSCSI target {target}: {reason}"


def target_name(backup_id: str, disk: str) -> str:
    """`iqn.2026-01.olvm-backup:<backup>.<disk>`, lower case, anything an IQN may not hold made a '-'."""
    clean = lambda text: re.sub(r"[^a-z0-9.-]+", "-", text.lower()).strip("-.") or "x"
    return f"{IQN_PREFIX}:{clean(backup_id)}.{clean(disk)}"


def is_initiator_name(allowed: str) -> bool:
    return allowed.lower().startswith(("iqn.", "eui.", "naa."))


def nbdfuse_argv(mountpoint: Path, filename: str, *, readonly: bool, unix: Path | None = None, host: str = "",
                 port: int = 0) -> list[str]:
    """nbdfuse showing the export as MOUNTPOINT/FILENAME (it stays in the foreground until unmounted or signalled)."""
    where = ["--unix", str(unix)] if unix is not None else ["--tcp", host, str(port)]
    return ["nbdfuse", *(["-r"] if readonly else []), f"{mountpoint}/{filename}", *where]


def free_control_port() -> int:
    """A tgtd control port no running tgtd holds: tgtd keeps a lock (lockf) on CONTROL_DIR/socket.N.lock."""
    for n in random.sample(range(1000, CONTROL_PORT_MAX), 200):
        lock = CONTROL_DIR / f"socket.{n}.lock"
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:
            return n
        except OSError:
            continue
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.lockf(fd, fcntl.LOCK_UN)
            return n
        except OSError:
            continue  # a live tgtd's
        finally:
            os.close(fd)
    raise IscsiError("every tgtd control port tried is taken", target="-")


def remove_control_files(control_port: int) -> None:
    """What a stopped (or killed) tgtd leaves behind: its control socket and its lock file."""
    for leftover in (f"socket.{control_port}", f"socket.{control_port}.lock"):
        (CONTROL_DIR / leftover).unlink(missing_ok=True)


@dataclass
class Target:
    """tgtd serving `backing` (a file) as LUN 1 of `name` on host:port, to the initiators in `allow`."""

    name: str
    backing: Path
    host: str
    port: int
    allow: list[str]
    log_file: Path
    control_port: int = 0  # tgtd's management channel; 0: one no tgtd holds
    spawned: Callable[[], None] = lambda: None  # called once tgtd runs, before it is ready (its pid is known)

    def __post_init__(self) -> None:
        if not self.allow:
            raise IscsiError("no initiator allowed: name at least one with --allow (IQN, address, CIDR or ALL)",
                             target=self.name)
        self.control_port = self.control_port or free_control_port()
        self.process = ManagedProcess(
            "tgtd", ["tgtd", "--foreground", "-C", str(self.control_port), "--iscsi",
                     f"portal={self.host}:{self.port}"], log_file=self.log_file, ready=self._spawned_then_answers,
            ready_timeout=15)

    def _spawned_then_answers(self) -> bool:
        spawned, self.spawned = self.spawned, lambda: None
        spawned()
        return self._answers()

    def _tgtadm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(["tgtadm", "-C", str(self.control_port), "--lld", "iscsi", *args], capture_output=True,
                              text=True, stdin=subprocess.DEVNULL)
        if check and done.returncode != 0:
            raise IscsiError(f"tgtadm {' '.join(args)}: {done.stderr.strip() or done.returncode}", target=self.name)
        return done

    def _answers(self) -> bool:
        return self._tgtadm("--mode", "sys", "--op", "show", check=False).returncode == 0 and \
            port_open("127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host, self.port)

    def start(self) -> "Target":
        self.process.start()
        try:
            self._tgtadm("--mode", "target", "--op", "new", "--tid", str(TID), "--targetname", self.name)
            self._tgtadm("--mode", "logicalunit", "--op", "new", "--tid", str(TID), "--lun", str(LUN),
                         "--backing-store", str(self.backing))
            for allowed in self.allow:
                by = "--initiator-name" if is_initiator_name(allowed) else "--initiator-address"
                self._tgtadm("--mode", "target", "--op", "bind", "--tid", str(TID), by, allowed)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """tgtd ignores SIGTERM while it has targets: the target is deleted (sessions dropped), then the daemon."""
        if self.process.running():
            self._tgtadm("--mode", "target", "--op", "delete", "--force", "--tid", str(TID), check=False)
            self._tgtadm("--mode", "sys", "--op", "delete", check=False)
        self.process.stop(timeout=3)
        if self.process.proc is not None:
            remove_control_files(self.control_port)

    def __enter__(self) -> "Target":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"iscsi://{host}:{self.port}/{self.name}/{LUN}"
