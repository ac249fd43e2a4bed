"""A writable export: a qcow2 overlay file over the read-only NBD export of a restore point disk, served by qemu-nbd.

Writes land in the overlay only (copy-on-write); the restore point never changes. The overlay is an ordinary
qcow2 whose backing file is the read-only export's NBD URI, export name `<backup>/<disk id>`: the next export given
the same file points it at its own socket (`qemu-img rebase -u`, metadata only) and so finds the writes again, and
an overlay made for another restore point or disk is refused rather than laid over the wrong bytes.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import BackupError


class OverlayError(BackupError):
    template = "overlay {path}: {reason}"


def _qemu_img(*args: str) -> str:
    done = subprocess.run(["qemu-img", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise OverlayError(done.stderr.strip() or f"qemu-img exited with {done.returncode}", path=args[-1])
    return done.stdout


def backing_export(path: Path) -> str | None:
    """The NBD export name an existing overlay was made over (None: no NBD backing file)."""
    info = json.loads(_qemu_img("info", "--output=json", "-U", str(path)))
    if info.get("format") != "qcow2":
        raise OverlayError(f"is {info.get('format')}, not qcow2", path=path)
    backing = info.get("backing-filename") or ""
    if not backing.startswith("nbd"):
        return None
    return unquote(urlsplit(backing).path.lstrip("/"))


def prepare(path: Path, backing_uri: str, export: str, size: int) -> bool:
    """Make the overlay at `path` over `backing_uri` (whose export name is `export`), or point the existing one at
    it. True when it was made now."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _qemu_img("create", "-q", "-f", "qcow2", "-F", "raw", "-b", backing_uri, str(path), str(size))
        return True
    made_over = backing_export(path)
    if made_over != export:
        raise OverlayError(f"was made over {made_over or 'no NBD export'}, not restore point disk {export}",
                           path=path)
    _qemu_img("rebase", "-u", "-F", "raw", "-b", backing_uri, str(path))
    return False


def qemu_nbd_argv(path: Path, *, unix: Path | None = None, host: str = "", port: int = 0) -> list[str]:
    """qemu-nbd serving the overlay read-write to any number of clients (--shared=0) until stopped (--persistent)."""
    where = ["--socket", str(unix)] if unix is not None else ["--bind", host, "--port", str(port)]
    return ["qemu-nbd", "--format", "qcow2", "--shared=0", "--persistent", "--cache=writeback", "--discard=unmap",
            *where, str(path)]
