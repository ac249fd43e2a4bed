"""Small disk images for file-level restore tests, made without mounting anything: a source tree with known
modes, owners, mtimes and symlinks; ext4 (`mke2fs -d`) and FAT (`mkfs.fat` + `mcopy`) file systems of it; partition
tables (`sfdisk` on a file) with those file systems, swap or LUKS signatures in their partitions. And what a tree
holds, to compare a restore with (`described`).
"""
from __future__ import annotations

import hashlib
import os
import random
import stat
import subprocess
from pathlib import Path

MIB = 1 << 20
WHEN = 1_600_000_000  # 2020-09-13: far from "now", so a copy that drops mtimes shows it


def source_tree(root: Path, *, seed: int = 1, uid: int = 1000) -> Path:
    """A small tree: text files, a 2.5 MiB random file (several chunks), an owner other than root, modes 0600 and
    0755, an empty directory, relative and absolute symlinks (to files and to a directory); every mtime set (WHEN
    plus a few seconds each)."""
    rnd = random.Random(seed)
    files = {
        "etc/hosts": b"127.0.0.1 localhost\n10.0.0.5 db\n",
        "etc/app/app.conf": b"[main]\nthreads = 4\n" * 20,
        "home/alice/notes.txt": b"remember the milk\n",
        "home/alice/data/blob.bin": rnd.randbytes(5 * MIB // 2 + 123),
        "usr/local/bin/tool": b"#!/bin/sh\necho tool\n",
        "var/log/empty.log": b"",
    }
    for i, (rel, data) in enumerate(sorted(files.items())):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (WHEN + 2 * i, WHEN + 2 * i))
    os.chmod(root / "home/alice/notes.txt", 0o600)
    os.chmod(root / "usr/local/bin/tool", 0o755)
    (root / "srv/empty").mkdir(parents=True)
    os.symlink("../etc/hosts", root / "home/hosts-link")
    os.symlink("/etc/app/app.conf", root / "etc/app.conf")
    os.symlink("../etc/app", root / "home/app-link")  # to a directory
    for link in ("home/hosts-link", "etc/app.conf", "home/app-link"):
        os.utime(root / link, (WHEN + 100, WHEN + 100), follow_symlinks=False)
    if os.geteuid() == 0:
        for p in [root / "home/alice", *(root / "home/alice").rglob("*")]:
            os.lchown(p, uid, uid)
    return root


def described(root: Path, *, dir_mtimes: bool = False) -> dict[str, tuple]:
    """relative path -> (kind, permission bits, uid, gid, mtime, sha256 or link target), for every entry under
    `root`. Directory mtimes are left out unless asked (file systems made from a tree set them as they fill)."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = str(path.relative_to(root))
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("symlink", None, st.st_uid, st.st_gid, int(st.st_mtime), os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                        int(st.st_mtime) if dir_mtimes else None, None)
        else:
            out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime),
                        hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def ext4(tree: Path, out: Path, size: int = 16 * MIB) -> Path:
    with open(out, "wb") as f:
        f.truncate(size)
    run("mke2fs", "-q", "-F", "-t", "ext4", "-E", "root_owner=0:0", "-d", str(tree), str(out))
    return out


def fat(tree: Path, out: Path, size: int = 16 * MIB, label: str = "EFI") -> Path:
    """FAT of `tree`'s files and directories (FAT has no symlinks, modes or owners: those are left out)."""
    with open(out, "wb") as f:
        f.truncate(size)
    run("mkfs.fat", "-n", label, str(out))
    for path in sorted(tree.rglob("*")):
        rel = path.relative_to(tree).as_posix()
        if path.is_symlink():
            continue
        if path.is_dir():
            run("mmd", "-i", str(out), f"::/{rel}")
        else:
            run("mcopy", "-m", "-i", str(out), str(path), f"::/{rel}")
    return out


LUKS_HEADER = b"LUKS\xba\xbe\x00\x02" + bytes(4088)
SWAP_PAGE = bytes(4086) + b"SWAPSPACE2"


def partitioned(out: Path, size: int, table: str, parts: list[tuple[int, Path | bytes, str, str]]) -> Path:
    """A disk image of `size` with a `table` ("dos" or "gpt") of `parts`: (size in MiB, content (a file system
    image or a few bytes written at the partition's start), sfdisk type, GPT name). Partitions start at 1 MiB and
    follow each other."""
    with open(out, "wb") as f:
        f.truncate(size)
    lines = [f"label: {table}"]
    start = MIB
    placed = []
    for mib, content, kind, name in parts:
        named = f', name="{name}"' if name else ""
        lines.append(f"start={start // 512}, size={mib * MIB // 512}, type={kind}{named}")
        placed.append((start, content))
        start += mib * MIB
    subprocess.run(["sfdisk", "-q", str(out)], input="\n".join(lines).encode(), check=True, capture_output=True)
    with open(out, "r+b") as f:
        for offset, content in placed:
            f.seek(offset)
            f.write(content if isinstance(content, bytes) else Path(content).read_bytes())
    return out
