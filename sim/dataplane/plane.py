"""The data plane of one simulated site: the host's ovirt-imageio daemon, the manager's imageio proxy, and one
qemu-nbd export per transfer ticket. All real processes; tickets go through the daemons' own control API."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from .. import procs
from .pki import Pki

log = logging.getLogger(__name__)

TICKET_TIMEOUT = 24 * 3600
NBD_CONNECTIONS = 8


@dataclass
class _Daemon:
    name: str
    port: int
    conf_dir: Path
    control: Path
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@dataclass
class _Export:
    socket: Path
    process: asyncio.subprocess.Process


def _write_conf(daemon: _Daemon, pki: Pki, run_dir: Path) -> None:
    conf = f"""\
[daemon]
run_dir = {run_dir}
drop_privileges = false
systemd_enable = false
poll_interval = 0.5

[tls]
enable = true
key_file = {pki.key_file}
cert_file = {pki.cert_file}
ca_file = {pki.ca_file}

[backend_http]
ca_file = {pki.ca_file}

[remote]
host = 127.0.0.1
port = {daemon.port}

[local]
# As on a real host: a client on the same machine may read and write over this socket instead of TLS.
enable = true
socket = {daemon.conf_dir / 'local.sock'}

[control]
transport = unix
socket = {daemon.control}
remove_timeout = 20

[handler_logfile]
args = ("{daemon.conf_dir / 'daemon.log'}",)
"""
    (daemon.conf_dir / "conf.d").mkdir(parents=True, exist_ok=True)
    (daemon.conf_dir / "conf.d" / "50-sim.conf").write_text(conf)


class DataPlaneError(RuntimeError):
    pass


class DataPlane:
    def __init__(self, workdir: Path, pki: Pki, host_port: int = 0, proxy_port: int = 0) -> None:
        self.workdir = workdir
        self.pki = pki
        self.host = _Daemon("imageio-host", host_port or procs.free_port(), workdir / "host", workdir / "host" / "sock")
        proxy_port = proxy_port or next(p for p in iter(procs.free_port, None) if p != self.host.port)
        self.proxy = _Daemon("imageio-proxy", proxy_port, workdir / "proxy",
                             workdir / "proxy" / "sock")
        self.exports: dict[str, _Export] = {}
        self._nbd_dir = workdir / "nbd"

    @property
    def host_url(self) -> str:
        return self.host.url

    @property
    def proxy_url(self) -> str:
        return self.proxy.url

    async def __aenter__(self) -> "DataPlane":
        self._nbd_dir.mkdir(parents=True, exist_ok=True)
        try:
            for daemon in (self.host, self.proxy):
                await self._start_daemon(daemon)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        for ticket_id in list(self.exports):
            with contextlib.suppress(Exception):
                await self._stop_export(ticket_id)
        for daemon in (self.proxy, self.host):
            if daemon.process is not None:
                await procs.stop(daemon.process)
                daemon.process = None
        shutil.rmtree(self._nbd_dir, ignore_errors=True)

    async def _start_daemon(self, daemon: _Daemon, attempts: int = 3) -> None:
        """Start a daemon on its port; a port found free can be taken by another process before the daemon binds
        it (tests run side by side), so a daemon that does not start is tried again on another free port."""
        for attempt in range(attempts):
            try:
                return await self._start_daemon_once(daemon)
            except procs.SimProcessError as e:
                if attempt == attempts - 1:
                    raise
                log.warning("%s did not start on port %d (%s); trying another port", daemon.name, daemon.port, e)
                daemon.port = procs.free_port()

    async def _start_daemon_once(self, daemon: _Daemon) -> None:
        run_dir = daemon.conf_dir / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        daemon.control.unlink(missing_ok=True)
        _write_conf(daemon, self.pki, run_dir)
        exe = str(Path(sys.executable).parent / "ovirt-imageio")
        if not Path(exe).exists():
            exe = shutil.which("ovirt-imageio") or exe

        def ready() -> bool:
            return daemon.control.exists() and procs.port_open(daemon.port)

        daemon.process = await procs.start(daemon.name, [exe, "--conf-dir", str(daemon.conf_dir)],
                                           log=daemon.conf_dir / "stdout.log", ready=ready, timeout=30)

    # -- control API ----------------------------------------------------------------------------------------
    async def _control(self, daemon: _Daemon, method: str, ticket_id: str, body: dict | None = None):
        connector = aiohttp.UnixConnector(path=str(daemon.control))
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as s:
            async with s.request(method, f"http://localhost/tickets/{ticket_id}",
                                 data=json.dumps(body) if body is not None else None) as r:
                text = await r.text()
                if r.status == 404 and method in ("GET", "DELETE"):
                    return None
                if r.status >= 300:
                    raise DataPlaneError(f"{daemon.name} {method} ticket {ticket_id}: {r.status} {text.strip()}")
                return json.loads(text) if text.strip() and method == "GET" else None

    # -- exports and tickets --------------------------------------------------------------------------------
    async def open_ticket(self, ticket_id: str, *, image: Path, image_format: str, direction: str, size: int,
                          bitmap: str | None = None, inactivity_timeout: int = 60,
                          transfer_id: str | None = None) -> tuple[str, str]:
        """Export image through qemu-nbd and install the ticket in the host daemon and the proxy."""
        sock = self._nbd_dir / f"{ticket_id}.sock"
        argv = ["qemu-nbd", "--socket", str(sock), "--format", image_format, "--persistent",
                f"--shared={NBD_CONNECTIONS}", "--allocation-depth", "--cache=writeback"]
        if direction == "download":
            argv.append("--read-only")
            if bitmap:
                argv += ["--bitmap", bitmap]
        else:
            argv += ["--discard=unmap", "--detect-zeroes=unmap"]
        argv.append(str(image))
        process = await procs.start(f"qemu-nbd {ticket_id}", argv, log=self._nbd_dir / f"{ticket_id}.log",
                                    ready=sock.exists, timeout=30)
        self.exports[ticket_id] = _Export(sock, process)
        ops = ["read"] if direction == "download" else ["read", "write"]
        common = {"uuid": ticket_id, "size": size, "ops": ops, "timeout": TICKET_TIMEOUT,
                  "inactivity_timeout": inactivity_timeout, "sparse": True}
        if transfer_id:
            common["transfer_id"] = transfer_id
        try:
            await self._control(self.host, "PUT", ticket_id,
                                dict(common, url=f"nbd:unix:{sock}", dirty=bitmap is not None))
            await self._control(self.proxy, "PUT", ticket_id,
                                dict(common, url=f"{self.host_url}/images/{ticket_id}", dirty=bitmap is not None))
        except BaseException:
            await self.close_ticket(ticket_id)
            raise
        return f"{self.host_url}/images/{ticket_id}", f"{self.proxy_url}/images/{ticket_id}"

    async def ticket_status(self, ticket_id: str) -> dict | None:
        return await self._control(self.host, "GET", ticket_id)

    async def expire_ticket(self, ticket_id: str) -> None:
        """Fault injection: the tickets vanish while the client may still be using them."""
        for daemon in (self.proxy, self.host):
            with contextlib.suppress(DataPlaneError):
                await self._control(daemon, "DELETE", ticket_id)

    async def close_ticket(self, ticket_id: str) -> None:
        """Remove the tickets (waiting for running requests) and stop the export, flushing what was written."""
        errors = []
        for daemon in (self.proxy, self.host):
            try:
                await self._control(daemon, "DELETE", ticket_id)
            except (DataPlaneError, aiohttp.ClientError) as e:
                errors.append(str(e))
        await self._stop_export(ticket_id)
        if errors:
            log.warning("closing ticket %s: %s", ticket_id, "; ".join(errors))

    async def _stop_export(self, ticket_id: str) -> None:
        export = self.exports.pop(ticket_id, None)
        if export is not None:
            await procs.stop(export.process, timeout=60)
            export.socket.unlink(missing_ok=True)
            (self._nbd_dir / f"{ticket_id}.log").unlink(missing_ok=True)
