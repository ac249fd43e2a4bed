"""FUSE mounts seen from outside: whether a directory is a mount point, and taking one down that its process left.

A FUSE mount whose process died answers every stat with ENOTCONN/ECONNABORTED, so Path.is_mount() raises on it:
the kernel's mount table (/proc/self/mountinfo) is asked instead.
"""
from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def mount_points() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {_unescape(line.split()[4]) for line in f}


def is_mounted(path: Path) -> bool:
    return os.path.abspath(path) in mount_points()


def is_dead(path: Path) -> bool:
    """`path` is a FUSE mount whose process is gone (killed): every access to it fails with ENOTCONN."""
    if not is_mounted(path):
        return False
    try:
        os.stat(path)
    except OSError as e:
        return e.errno in (errno.ENOTCONN, errno.ECONNABORTED)
    return False


def unmount(path: Path) -> None:
    """Lazy unmount (a dead FUSE process's mount, or one still open by someone); nothing if not mounted."""
    if is_mounted(path):
        subprocess.run(["fusermount3", "-u", "-z", str(path)], capture_output=True, stdin=subprocess.DEVNULL)
