"""Network exports of restore point disks: the processes of one export, its state file, and list and stop.

An export is a supervisor (the `olvm-backup serve` process, in the foreground or detached) and its children, each
in its own process group:

    nbdkit (read-only, the restore point)                    -- the NBD export, or the backing of:
    qemu-nbd (qcow2 overlay over nbdkit, --writable)         -- the NBD export when writable
    nbdfuse (the NBD export as one file) -> tgtd (--iscsi)   -- the iSCSI target

The supervisor writes `<data dir>/exports/<id>/state.json` once all are ready, stops them in reverse order on
SIGTERM/SIGINT (or when one dies), unmounts and removes the state. `stop` signals the supervisor; when it was
killed (no clean stop), `stop` kills the recorded process groups and unmounts what it left. Logs stay in
`<data dir>/logs/exports/<id>/`.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ..config import Settings, to_environ
from ..errors import BackupError
from ..stack.processes import ManagedProcess, pid_alive
from . import iscsi, nbd, overlay
from .mounts import unmount

log = logging.getLogger(__name__)

SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes: a deep data dir puts the sockets under /tmp instead
STOP_TIMEOUT = 30.0


class ExportError(BackupError):
    template = "export {export}: {reason}"


@dataclass(frozen=True)
class Address:
    """Where a server listens: a Unix socket (`unix:PATH`) or TCP (`tcp:HOST:PORT`)."""

    unix: Path | None = None
    host: str = ""
    port: int = 0

    @classmethod
    def parse(cls, text: str) -> "Address":
        kind, _, rest = text.partition(":")
        if kind == "unix" and rest:
            return cls(unix=Path(rest).absolute())
        if kind == "tcp" and rest:
            host, _, port = rest.rpartition(":")
            if port.isdigit() and 0 < int(port) < 65536:
                return cls(host=host.strip("[]") or "0.0.0.0", port=int(port))
        raise ValueError(f"{text!r} is not unix:PATH or tcp:HOST:PORT")

    def __str__(self) -> str:
        return f"unix:{self.unix}" if self.unix is not None else f"tcp:{self.host}:{self.port}"

    def local(self) -> "Address":
        """The same server as reached from this machine (a wildcard address through loopback)."""
        if self.unix is None and self.host in ("0.0.0.0", "::", ""):
            return Address(host="127.0.0.1", port=self.port)
        return self

    def where(self) -> dict:
        """The keyword arguments the argv builders take."""
        return {"unix": self.unix} if self.unix is not None else {"host": self.host, "port": self.port}

    def nbd_uri(self) -> str:
        return nbd.nbd_uri(**self.local().where())


@dataclass(frozen=True)
class ExportSpec:
    backup_id: str
    disk: str
    listen: Address | None = None  # None: a Unix socket in the export's run directory
    writable: bool = False
    overlay: Path | None = None
    iscsi: Address | None = None   # the portal (tcp) when the disk is also an iSCSI target
    allow: tuple[str, ...] = ()

    def check(self) -> None:
        if self.writable and self.overlay is None:
            raise ExportError("--writable needs --overlay FILE (where the writes are kept)", export=self.backup_id)
        if self.overlay is not None and not self.writable:
            raise ExportError("--overlay is for --writable exports", export=self.backup_id)
        if self.iscsi is not None and (self.iscsi.unix is not None or not self.allow):
            raise ExportError("--iscsi needs a tcp:HOST:PORT portal and at least one --allow", export=self.backup_id)


def new_id() -> str:
    return secrets.token_hex(4)


def exports_dir(settings: Settings) -> Path:
    return settings.data_dir / "exports"


def logs_dir(settings: Settings, export_id: str) -> Path:
    return settings.data_dir / "logs" / "exports" / export_id


def state_file(settings: Settings, export_id: str) -> Path:
    return exports_dir(settings) / export_id / "state.json"


def _write_state(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)


def _nbd_answers(address: Address) -> bool:
    """The server is up when it answers the NBD handshake (not merely when its socket exists)."""
    local = address.local()
    return nbd.answers(str(local.unix) if local.unix is not None else (local.host, local.port))


def _claim_socket(path: Path, export_id: str) -> None:
    """A socket file no server answers on is a stopped server's leftover (nbdkit leaves its socket behind): it
    would make the next bind fail. One that answers is another export's."""
    if not path.exists():
        return
    if not path.is_socket():
        raise ExportError(f"{path} exists and is not a socket", export=export_id)
    if nbd.answers(str(path)):
        raise ExportError(f"an NBD server already answers on {path}", export=export_id)
    path.unlink()


def _find_disk(settings: Settings, backup_id: str, disk: str) -> tuple[str, str, int]:
    """(disk id, disk name, size): the restore point and disk exist, said before any process starts."""
    from ..repository import catalog
    from ..repository.sealedstore import open_sealed

    async def find() -> tuple[str, str, int]:
        async with open_sealed(settings, ensure_bucket=False) as (store, _):
            record = (await catalog.find(store, backup_id)).disk(disk)
            return record.disk_id, record.name, record.size

    return asyncio.run(find())


@dataclass
class Export:
    """The processes of one export, started by `start()` (a context manager) and stopped in reverse order."""

    settings: Settings
    spec: ExportSpec
    export_id: str = field(default_factory=new_id)

    def __post_init__(self) -> None:
        self.processes: list[ManagedProcess] = []
        self.mounts: list[Path] = []
        self.state: dict = {}
        self._stack = contextlib.ExitStack()
        self.dir = exports_dir(self.settings) / self.export_id
        self.logs = logs_dir(self.settings, self.export_id)
        run = self.dir
        if len(str(run / "overlay.sock")) > SOCKET_PATH_MAX:
            run = Path("/tmp") / f"olvm-export-{self.export_id}"
        self.run_dir = run

    def _start(self, name: str, argv: list[str], ready: Callable[[], bool], env: dict | None = None,
               listen: Address | None = None) -> None:
        """Start a child; `listen`: the address it serves on, a Unix socket removed again once it stopped."""
        if listen is not None and listen.unix is not None:
            _claim_socket(listen.unix, self.export_id)
            self._stack.callback(listen.unix.unlink, missing_ok=True)  # runs after the process has stopped
        process = ManagedProcess(name, argv, log_file=self.logs / f"{name}.log", env=env,
                                 ready=_first_calling(self._write_state, ready), ready_timeout=60)
        self._stack.callback(process.stop)
        self.processes.append(process)
        process.start()
        self._write_state()

    def start(self) -> "Export":
        spec = self.spec
        spec.check()
        disk_id, disk_name, size = _find_disk(self.settings, spec.backup_id, spec.disk)
        for d in (self.dir, self.run_dir):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o700)  # the sockets: only who may read the state
        self._stack.callback(self._remove_state)
        try:
            public = spec.listen or Address(unix=self.run_dir / "nbd.sock")
            restore_point = Address(unix=self.run_dir / "ro.sock") if spec.writable else public
            self.state = {
                "id": self.export_id, "pid": os.getpid(), "started_at": time.time(), "backup_id": spec.backup_id,
                "disk": disk_name, "disk_id": disk_id, "size": size, "listen": str(public), "nbd": public.nbd_uri(),
                "writable": spec.writable, "overlay": str(spec.overlay) if spec.overlay else "", "iscsi": "",
                "allow": list(spec.allow), "logs": str(self.logs), "ready": False,
            }
            # Only nbdkit reads the repository: only it is given the settings (and their secrets), by environment.
            self._start("nbdkit", nbd.nbdkit_argv(spec.backup_id, disk_id, **restore_point.where()),
                        lambda: _nbd_answers(restore_point), env=nbd.plugin_environ(to_environ(self.settings)),
                        listen=restore_point)
            if spec.writable:
                name = nbd.export_name(spec.backup_id, disk_id)
                if overlay.prepare(spec.overlay, nbd.nbd_uri(unix=restore_point.unix, name=name), name, size):
                    log.info("overlay %s made over restore point %s disk %s", spec.overlay, spec.backup_id, disk_name)
                self._start("qemu-nbd", overlay.qemu_nbd_argv(spec.overlay, **public.where()),
                            lambda: _nbd_answers(public), listen=public)
            if spec.iscsi is not None:
                self._start_iscsi(public, disk_name)
        except BaseException:
            self._stack.close()
            raise
        self.state["ready"] = True  # what a detaching `serve` waits for
        self._write_state()
        return self

    def _start_iscsi(self, public: Address, disk_name: str) -> None:
        mountpoint = self.run_dir / "fuse"
        mountpoint.mkdir(exist_ok=True)
        filename = "disk.raw"
        self.mounts.append(mountpoint)
        self._stack.callback(unmount, mountpoint)  # after nbdfuse stops: what a killed one left
        self._start("nbdfuse", iscsi.nbdfuse_argv(mountpoint, filename, readonly=not self.spec.writable,
                                                  **public.local().where()),
                    lambda: (mountpoint / filename).exists())
        portal = self.spec.iscsi
        target = iscsi.Target(iscsi.target_name(self.spec.backup_id, disk_name), mountpoint / filename,
                              portal.host, portal.port, list(self.spec.allow), self.logs / "tgtd.log",
                              spawned=self._write_state)
        self._stack.callback(target.stop)
        self.processes.append(target.process)
        self.state["iscsi"] = target.url
        self.state["iscsi_target"] = target.name
        self.state["tgtd_control_port"] = target.control_port
        target.start()

    def _write_state(self) -> None:
        self.state["children"] = [{"name": p.name, "pid": p.pid} for p in self.processes if p.pid]
        self.state["mounts"] = [str(m) for m in self.mounts]
        self.state["run_dir"] = str(self.run_dir)
        _write_state(self.dir / "state.json", self.state)

    def _remove_state(self) -> None:
        shutil.rmtree(self.run_dir, ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def dead(self) -> ManagedProcess | None:
        return next((p for p in self.processes if not p.running()), None)

    def stop(self) -> None:
        self._stack.close()

    def __enter__(self) -> "Export":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _first_calling(first: Callable[[], None], ready: Callable[[], bool]) -> Callable[[], bool]:
    """`ready`, calling `first` once before its first check (ManagedProcess checks just after the process started):
    the state then records the child's pid before it is ready, so a supervisor killed while a child starts up (which
    can take a minute) leaves it for `--stop` to find."""
    pending = [first]

    def check() -> bool:
        while pending:
            pending.pop()()
        return ready()
    return check


def serve(settings: Settings, spec: ExportSpec, export_id: str, on_ready: Callable[[dict], None]) -> int:
    """Run the export until SIGTERM/SIGINT/SIGHUP (0) or until one of its processes dies (1)."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM,
                                                                           signal.SIGHUP)}
    try:
        with Export(settings, spec, export_id) as export:
            on_ready(export.state)
            while not stop.wait(0.5):
                dead = export.dead()
                if dead is not None:
                    raise ExportError(f"{dead.name} exited with {dead.proc.returncode}; log: {dead.tail()}",
                                      export=export_id)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def spawn_cli(settings: Settings, argv: list[str], log_file: Path) -> subprocess.Popen:
    """`olvm-backup <argv>` in a session of its own (a terminal's Ctrl-C does not reach it), its output in
    `log_file`, the settings in its environment (their secrets included: never in arguments)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLVM_")}
    env.update(to_environ(settings))
    with open(log_file, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "olvm_backup.cli.main", *argv], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def tail(log_file: Path, lines: int = 10) -> str:
    try:
        return "\n".join(log_file.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_detached(settings: Settings, argv: list[str], export_id: str, timeout: float = 90.0) -> dict:
    """Run `olvm-backup <argv>` (a foreground serve of `export_id`) in its own session and return its state once
    ready. The settings go by environment (with their secrets; never in arguments)."""
    logs = logs_dir(settings, export_id)
    child = spawn_cli(settings, argv, logs / "serve.log")
    path = state_file(settings, export_id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise ExportError(f"did not start:\n{tail(logs / 'serve.log')}", export=export_id)
        with contextlib.suppress(OSError, ValueError):
            state = json.loads(path.read_text())
            if state.get("ready"):
                return state
        time.sleep(0.2)
    child.terminate()
    child.wait(STOP_TIMEOUT)
    raise ExportError(f"not ready after {timeout:.0f}s; see {logs}", export=export_id)


def running(settings: Settings) -> list[dict]:
    """Every export's state, with `alive`: false when its supervisor is gone (stop cleans what it left)."""
    found = []
    for path in sorted(exports_dir(settings).glob("*/state.json")):
        with contextlib.suppress(OSError, ValueError):
            state = json.loads(path.read_text())
            state["alive"] = pid_alive(state["pid"])
            found.append(state)
    return found


def stop(settings: Settings, export_id: str, timeout: float = STOP_TIMEOUT) -> dict:
    """Stop an export: its supervisor stops its processes; what a killed supervisor left is killed and unmounted."""
    path = state_file(settings, export_id)
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        raise ExportError("no such export (see `olvm-backup serve --list`)", export=export_id) from None
    pid = state["pid"]
    if pid_alive(pid) and pid != os.getpid():
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(pid):
            log.warning("export %s: supervisor %s did not stop in %.0fs, killing it", export_id, pid, timeout)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    _clean_leftovers(state)
    shutil.rmtree(path.parent, ignore_errors=True)
    return state


def _clean_leftovers(state: dict) -> None:
    for child in _alive_children(state):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child["pid"], signal.SIGKILL)  # each child leads its own group
    for mount in state.get("mounts", []):
        unmount(Path(mount))
    if state.get("tgtd_control_port"):
        iscsi.remove_control_files(state["tgtd_control_port"])
    listen = Address.parse(state["listen"])
    if listen.unix is not None and listen.unix.is_socket() and not _nbd_answers(listen):
        listen.unix.unlink(missing_ok=True)
    if state.get("run_dir"):
        shutil.rmtree(state["run_dir"], ignore_errors=True)


def _alive_children(state: dict) -> Iterator[dict]:
    """The recorded children still running, as themselves (a pid reused by another program is left alone)."""
    for child in state.get("children", []):
        try:
            argv0 = Path(f"/proc/{child['pid']}/cmdline").read_bytes().split(b"\0", 1)[0]
        except OSError:
            continue
        if pid_alive(child["pid"]) and Path(argv0.decode(errors="replace")).name == child["name"]:
            yield child
