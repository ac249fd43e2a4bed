"""A file system image built from a directory tree, without mounting it: ext4 (mke2fs -d), XFS (mkfs.xfs protofile,
times set with xfs_db), FAT (mkfs.fat + mtools), NTFS (mkntfs, filled through a user-space ntfs-3g FUSE mount).

The same tree, size, UUID and label build the same image but for a few creation times, so rebuilding a volume after a
guest changed one file differs from the old image in only a few blocks (what the guest writes back).
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time
import uuid as uuidlib
from pathlib import Path

from ..procs import SimProcessError

FILESYSTEMS = ("ext4", "xfs", "fat", "ntfs")
# What each can hold of a tree: FAT has no modes, owners or symlinks; ntfs-3g writes symlinks as Interix files that
# Windows does not read as links, and keeps no modes without a user mapping: neither is seeded there.
SYMLINKS = {"ext4": True, "xfs": True, "fat": False, "ntfs": False}
MIN_SIZE = {"ext4": 2 << 20, "xfs": 16 << 20, "fat": 1 << 20, "ntfs": 2 << 20}
FAKE_TIME = "1700000000"
TOOL_TIMEOUT = 120


class MkfsError(SimProcessError):
    pass


def _run(*argv: str, env: dict | None = None, cwd: Path | None = None) -> str:
    r = subprocess.run(argv, capture_output=True, env={**os.environ, "TZ": "UTC", **(env or {})}, cwd=cwd,
                       timeout=TOOL_TIMEOUT)
    if r.returncode != 0:
        raise MkfsError(f"{' '.join(argv[:2])}… failed: {(r.stderr or r.stdout).decode(errors='replace').strip()}")
    return r.stdout.decode(errors="replace")


def build(fs: str, tree: Path, entries: list[dict], size: int, out: Path, *, uuid: str, label: str) -> None:
    """out: a new image of `size` bytes holding `tree` (entries: the same tree as fstree entries, for what the
    tools cannot take from the directory)."""
    if fs not in FILESYSTEMS:
        raise MkfsError(f"unknown file system {fs!r} (known: {', '.join(FILESYSTEMS)})")
    if size < MIN_SIZE[fs]:
        raise MkfsError(f"{fs} needs at least {MIN_SIZE[fs] >> 20} MiB, not {size} bytes")
    if not SYMLINKS[fs] and any(e["type"] == "symlink" for e in entries):
        raise MkfsError(f"{fs} cannot hold the symlinks of this tree")
    with open(out, "wb") as f:
        f.truncate(size)
    {"ext4": _ext4, "xfs": _xfs, "fat": _fat, "ntfs": _ntfs}[fs](tree, entries, out, uuid, label)


def _ext4(tree: Path, entries: list[dict], out: Path, uuid: str, label: str) -> None:
    # The hash seed and the fake time make directory hashes and superblock times repeat from one build to the next.
    _run("mke2fs", "-q", "-F", "-t", "ext4", "-U", uuid, "-E", f"hash_seed={uuid}", "-L", label[:16], "-d", str(tree),
         str(out), env={"E2FSPROGS_FAKE_TIME": FAKE_TIME})


def _xfs(tree: Path, entries: list[dict], out: Path, uuid: str, label: str) -> None:
    lines = ["/dev/null", "0 0", "d--755 0 0"]
    depth = 0
    for e in entries:
        level = e["path"].count("/")
        while depth > level:
            lines.append("$")
            depth -= 1
        name = e["path"].rsplit("/", 1)[-1]
        if e["type"] == "dir":
            lines.append(f"{name} d--{e['mode'] & 0o777:03o} {e['uid']} {e['gid']}")
            depth += 1
        elif e["type"] == "symlink":
            lines.append(f"{name} l--777 {e['uid']} {e['gid']} {e['target']}")
        else:
            suid = "u" if e["mode"] & 0o4000 else "-"
            sgid = "g" if e["mode"] & 0o2000 else "-"
            lines.append(f"{name} -{suid}{sgid}{e['mode'] & 0o777:03o} {e['uid']} {e['gid']} {tree / e['path']}")
    lines += ["$"] * (depth + 1)
    proto = out.with_suffix(".proto")
    proto.write_text("\n".join(lines) + "\n")
    # --unsupported: below 300 MiB (the size a test disk can afford) mkfs.xfs refuses unless told.
    _run("mkfs.xfs", "-q", "-f", "--unsupported", "-m", f"uuid={uuid}", "-L", label[:12], "-p", str(proto), str(out))
    # Protofiles give every inode the build's time: set mtimes the way xfs_db writes a bigtime timestamp (nanoseconds
    # since 1901-12-13T20:45:52Z, the signed 32-bit epoch's start).
    commands = []
    for path, mtime in [("/", _root_mtime(tree)), *[("/" + e["path"], e["mtime"]) for e in entries]]:
        commands += ["-c", f"path {path}", "-c", f"write core.mtime.sec {(mtime + (1 << 31)) * 10 ** 9}"]
    _run("xfs_db", "-x", *commands, str(out))


def _root_mtime(tree: Path) -> int:
    return int(tree.stat().st_mtime)


def _fat(tree: Path, entries: list[dict], out: Path, uuid: str, label: str) -> None:
    volume_id = uuidlib.UUID(uuid).hex[:8]
    _run("mkfs.fat", "-i", volume_id, "-n", label[:11].upper(), str(out))
    # -s -m: recursively, keeping files' and directories' modification times (mtools writes local time: TZ=UTC
    # makes it the UTC time).
    tops = sorted(p.name for p in tree.iterdir())
    if tops:
        _run("mcopy", "-s", "-m", "-i", str(out), *[str(tree / name) for name in tops], "::/",
             env={"MTOOLS_SKIP_CHECK": "1"})


@contextlib.contextmanager
def fuse_mount(image: Path, where: Path):
    """An ntfs-3g FUSE mount of an image file, in the foreground so that its exit says the volume is written."""
    where.mkdir(exist_ok=True)
    proc = subprocess.Popen(["ntfs-3g", "-o", "no_detach,silent", str(image), str(where)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not os.path.ismount(where):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise MkfsError(f"ntfs-3g did not mount {image.name}: "
                                f"{(proc.stdout.read() if proc.poll() is not None else b'').decode(errors='replace')}")
            time.sleep(0.02)
        yield where
    finally:
        if os.path.ismount(where):
            subprocess.run(["fusermount", "-u", str(where)], capture_output=True, timeout=TOOL_TIMEOUT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise MkfsError(f"ntfs-3g did not finish writing {image.name}") from None
        finally:
            if os.path.ismount(where):
                subprocess.run(["fusermount", "-uz", str(where)], capture_output=True)
        if proc.returncode not in (0, None):
            raise MkfsError(f"ntfs-3g on {image.name} ended with {proc.returncode}: "
                            f"{proc.stdout.read().decode(errors='replace')}")


def _ntfs(tree: Path, entries: list[dict], out: Path, uuid: str, label: str) -> None:
    # -T: system files carry the epoch instead of the build's time; -s/-p/-H/-S: geometry a file cannot report.
    _run("mkntfs", "-F", "-Q", "-q", "-T", "-s", "512", "-p", "0", "-H", "0", "-S", "0", "-L", label[:32], str(out))
    # The volume serial (mkntfs's own is the same for every -T build): from the UUID, in the boot sector and its copy
    # in the volume's last sector.
    with open(out, "r+b") as f:
        boot = bytearray(f.read(512))
        boot[0x48:0x50] = uuidlib.UUID(uuid).bytes[:8]
        for at in (0, int.from_bytes(boot[0x28:0x30], "little") * 512):
            f.seek(at)
            f.write(boot)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".ntfs-") as tmp, fuse_mount(out, Path(tmp) / "m") as m:
        for e in entries:
            target = m / e["path"]
            if e["type"] == "dir":
                target.mkdir()
            else:
                target.write_bytes((tree / e["path"]).read_bytes())
        for e in reversed(entries):
            os.utime(m / e["path"], (e["mtime"], e["mtime"]))
        os.utime(m, (_root_mtime(tree),) * 2)
