"""One disk of a restore point over NBD: the nbdkit Python plugin that serves it, and the command that starts nbdkit.

nbdkit (Debian `nbdkit` + `nbdkit-plugin-python`) embeds the system's Python 3.11 and loads this very file as its
plugin. The serving process hands it the settings in its environment (OLVM_*, the secrets included: never in
arguments, which any user can read in /proc) and, through PYTHONPATH, this repository and the packages of the
Python that started it (the same minor version, so their C extensions load).

The image is read-only, answers in parallel (RestorePointImage is thread-safe), and reports the holes of the
restore point's map as NBD `base:allocation` extents: a client copying the disk (nbdcopy, qemu-img convert) skips
them instead of reading zeros over the network.
"""
from __future__ import annotations

import contextlib
import os
import site
import socket
import struct
import sys
from pathlib import Path
from urllib.parse import quote

API_VERSION = 2  # nbdkit's Python plugin API: pread fills the buffer it is given

PLUGIN = Path(__file__).resolve()
REPOSITORY = PLUGIN.parents[2]  # the directory that holds the olvm_backup package
NBD_OPT_ABORT = 2


# --- the command line ------------------------------------------------------------------------------------------------

def export_name(backup_id: str, disk_id: str) -> str:
    """The NBD export name of a disk: an overlay records it in its backing file, so that it is never put over
    another restore point's disk."""
    return f"{backup_id}/{disk_id}"


def nbdkit_argv(backup_id: str, disk: str, *, unix: Path | None = None, host: str = "", port: int = 0) -> list[str]:
    """nbdkit in the foreground, read-only, on a Unix socket or a TCP address, serving `disk` of `backup_id`."""
    where = ["--unix", str(unix)] if unix is not None else ["--ipaddr", host, "--port", str(port)]
    return ["nbdkit", "--foreground", "--readonly", "--exit-with-parent", *where, "python", str(PLUGIN),
            f"backup={backup_id}", f"disk={disk}"]


def plugin_environ(settings_environ: dict[str, str]) -> dict[str, str]:
    """The environment nbdkit runs in: ours without settings of our own, the settings to serve with, and the
    Python path to this repository and our packages."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLVM_") and k != "PYTHONPATH"}
    env.update(settings_environ)
    paths = [str(REPOSITORY), *site.getsitepackages(), *[p for p in sys.path if p.endswith("site-packages")]]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def nbd_uri(*, unix: Path | None = None, host: str = "", port: int = 0, name: str = "") -> str:
    """The URI clients (qemu-img, nbdcopy, nbdinfo) open."""
    path = "/" + quote(name, safe="") if name else ""
    if unix is not None:
        return f"nbd+unix://{path}?socket={unix}" if path else f"nbd+unix:///?socket={unix}"
    host = f"[{host}]" if ":" in host else host
    return f"nbd://{host}:{port}{path}"


def answers(address: str | tuple[str, int]) -> bool:
    """An NBD server answers on `address` (a Unix socket path, or (host, port)): it sends the newstyle greeting;
    the probe then leaves politely (NBD_OPT_ABORT), so the server logs no broken handshake."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(2.0)
            s.connect(address)
            greeting = b""
            while len(greeting) < 18:  # NBDMAGIC, IHAVEOPT, handshake flags
                part = s.recv(18 - len(greeting))
                if not part:
                    return False
                greeting += part
            if greeting[:16] != b"NBDMAGICIHAVEOPT":
                return False
            s.sendall(struct.pack(">I", 1) + b"IHAVEOPT" + struct.pack(">II", NBD_OPT_ABORT, 0))
            with contextlib.suppress(OSError):
                s.recv(64)  # the server's acknowledgement, if it sends one
            return True
    except OSError:
        return False


# --- the plugin: called by nbdkit, in its process ------------------------------------------------------------------

_params: dict[str, str] = {}
_opened: list = []  # [the open_image context manager, the image] while nbdkit serves


def config(key: str, value: str) -> None:
    if key not in ("backup", "disk"):
        raise RuntimeError(f"unknown parameter {key}= (backup= and disk= are expected)")
    _params[key] = value


def config_complete() -> None:
    missing = [k for k in ("backup", "disk") if not _params.get(k)]
    if missing:
        raise RuntimeError(f"missing parameter(s): {', '.join(k + '=' for k in missing)}")


def thread_model() -> int:
    import nbdkit
    return nbdkit.THREAD_MODEL_PARALLEL


def after_fork() -> None:
    """Open the restore point here: its loop thread must start in the process that serves (after nbdkit forks)."""
    # Absolute imports: nbdkit loads this file as a script, not as a module of the package.
    from olvm_backup.access.image import open_image
    from olvm_backup.config import load_settings
    from olvm_backup.logs import setup_logging
    from olvm_backup.runtime import secrets_of

    settings = load_settings(environ=os.environ)
    setup_logging(settings.log_level, "olvm-backup nbd", secrets_of(settings))
    opening = open_image(settings, _params["backup"], _params["disk"], use="network export")
    _opened[:] = [opening, opening.__enter__()]


def cleanup() -> None:
    if _opened:
        opening, _ = _opened
        _opened.clear()
        opening.__exit__(None, None, None)


def open(readonly: bool) -> int:  # nbdkit's name for a new connection
    return 1  # one image for every connection: the handle carries nothing


def get_size(h: int) -> int:
    return _opened[1].size


def can_write(h: int) -> bool:
    return False


def can_multi_conn(h: int) -> bool:
    return True  # read-only: every connection sees the same bytes


def can_extents(h: int) -> bool:
    return True


def can_cache(h: int) -> int:
    import nbdkit
    return nbdkit.CACHE_NONE


def pread(h: int, buf, offset: int, flags: int) -> None:
    data = _opened[1].pread(len(buf), offset)
    buf[:len(data)] = data
    if len(data) < len(buf):  # nbdkit never asks past the end: a short read would be a bug, not zeros
        raise RuntimeError(f"short read at offset {offset}: {len(data)} of {len(buf)} bytes")


def extents(h: int, count: int, offset: int, flags: int) -> list[tuple[int, int, int]]:
    import nbdkit
    hole = nbdkit.EXTENT_HOLE | nbdkit.EXTENT_ZERO
    found = [(start, length, 0 if data else hole) for start, length, data in _opened[1].extents(offset, count)]
    return found[:1] if flags & nbdkit.FLAG_REQ_ONE else found
