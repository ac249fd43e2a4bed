"""Disks with real file systems for the tests: an inventory builder (MBR and GPT disks, each with ext4, XFS, FAT,
NTFS and ext4 on LVM) and checks with the file systems' own tools on raw images (no mounting)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import yaml

MIB = 1 << 20
FILESYSTEMS = ("ext4", "xfs", "fat", "ntfs", "lvm")  # "lvm": ext4 on an LVM2 logical volume
SIZES = {"ext4": 8, "xfs": 16, "fat": 8, "ntfs": 8, "lvm": 12}  # MiB, the smallest each takes with room to spare
BLKID_TYPE = {"ext4": "ext4", "xfs": "xfs", "fat": "vfat", "ntfs": "ntfs", "lvm": "ext4"}
TOOLS_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "TZ": "UTC"}


def tree(fs: str, tag: str) -> list[dict]:
    """The seeded tree of one volume: nested directories, text and pattern files of several sizes, modes and mtimes,
    symlinks where the file system keeps them. `tag` makes each volume's content its own."""
    files = [
        {"path": "etc/hostname", "text": f"{tag}\n", "mode": "0644", "mtime": "2021-05-06T07:08:10Z"},
        {"path": "etc/secret.conf", "text": f"key={tag}\n", "mode": "0600", "mtime": 1600000000},
        {"path": "data/blob.bin", "pattern": "random", "seed": int(sha256(tag.encode())[:8], 16), "size": "300KiB",
         "mtime": 1650000000},
        {"path": "data/nested/deeper/notes.txt", "pattern": "text", "text": f"notes of {tag} ", "size": 70000,
         "mode": "0640", "mtime": 1660000002},
        {"path": "data/nested/", "mode": "0750", "mtime": 1660000010},
        {"path": "data/empty/", "mode": "0700", "mtime": 1670000000},
        {"path": "bin/run.sh", "text": "#!/bin/sh\necho hi\n", "mode": "0755", "mtime": 1680000000},
        {"path": "docs/readme.txt", "text": f"read me: {tag}\n", "mtime": 1690000000},
    ]
    if fs in ("ext4", "xfs", "lvm"):
        files += [{"path": "etc/link", "symlink": "hostname", "mtime": 1600000100},
                  {"path": "docs/abs", "symlink": "/etc/hostname"}]
    return files


def disk(name: str, table: str, size_mib: int = 96) -> dict:
    """An inventory disk with one volume of each file system kind; logical volume `data` of group vg<name>."""
    volumes = []
    for fs in FILESYSTEMS:
        vol = {"name": f"{fs}", "fs": "ext4" if fs == "lvm" else fs, "size": f"{SIZES[fs]}MiB",
               "files": tree(fs, f"{name}-{fs}")}
        if fs == "lvm":
            vol["lvm"] = {"vg": f"vg{name.replace('_', '')}", "lv": "data"}
        volumes.append(vol)
    return {"name": name, "size": f"{size_mib}MiB", "format": "cow", "filesystems": {"table": table,
                                                                                    "volumes": volumes}}


def inventory(vm: str, disks: list[dict]) -> dict:
    return {"vms": [{"name": vm, "status": "up", "guest_agent": True, "os": "rhel_9x64",
                     "disks": [dict(d, interface="virtio_scsi", bootable=i == 0) for i, d in enumerate(disks)]}]}


def write_inventory(path: Path, inv: dict) -> Path:
    path.write_text(yaml.safe_dump(inv, sort_keys=False))
    return path


def run(*argv: str, check: bool = True, text: bool = False) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, capture_output=True, env=TOOLS_ENV, text=text, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr!r} {r.stdout!r}")
    return r


def extract(image: Path, offset: int, size: int, out: Path) -> Path:
    """The bytes [offset, offset+size) of a raw image as a file of its own (what a tool checks)."""
    with open(image, "rb") as src, open(out, "wb") as dst:
        src.seek(offset)
        left = size
        while left:
            block = src.read(min(left, 4 * MIB))
            assert block, f"{image} ends before {offset + size}"
            dst.write(block)
            left -= len(block)
    return out


def fsck(fs: str, volume: Path) -> None:
    """The file system's own checker, read-only, finds nothing to repair."""
    argv = {"ext4": ["fsck.ext4", "-fn"], "lvm": ["fsck.ext4", "-fn"], "xfs": ["xfs_repair", "-n", "-o",
                                                                              "force_geometry"],
            "fat": ["fsck.fat", "-n"], "ntfs": ["ntfsfix", "-n"]}[fs]
    run(*argv, str(volume))


def read_file(fs: str, volume: Path, path: str) -> bytes | None:
    """A file's bytes read with the file system's tools (None: no such file); XFS has no such tool (None)."""
    if fs in ("ext4", "lvm"):
        r = run("debugfs", "-R", f"stat /{path}", str(volume), text=True)
        if "File not found" in r.stderr:
            return None
        return run("debugfs", "-R", f"cat /{path}", str(volume)).stdout
    if fs == "fat":
        r = run("mtype", "-i", str(volume), f"::/{path}", check=False)
        return r.stdout if r.returncode == 0 else None
    if fs == "ntfs":
        r = run("ntfscat", str(volume), f"/{path}", check=False)
        return r.stdout if r.returncode == 0 else None
    return None


def ext4_stat(volume: Path, path: str) -> dict:
    """mode and mtime of an ext4 inode, from debugfs."""
    out = run("debugfs", "-R", f"stat /{path}", str(volume), text=True).stdout
    mode = int(re.search(r"Mode:\s+(\d+)", out).group(1), 8)
    mtime = int(re.search(r"mtime: (0x[0-9a-f]+)", out).group(1), 16)
    return {"mode": mode, "mtime": mtime}


def sfdisk_json(image: Path) -> dict:
    return json.loads(run("sfdisk", "--json", str(image), text=True).stdout)["partitiontable"]


def blkid(image: Path, offset: int) -> dict:
    out = run("blkid", "-p", "-O", str(offset), "-o", "export", str(image), text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
