"""Guest file systems on a simulated disk: seeded from the inventory's `filesystems:` and changed file by file, always
through guest writes, so that dirty bitmaps and snapshot layers see exactly the blocks that changed.

The disk (or, for a change, one volume) is built as image files in a temporary directory with the file systems' own
tools, then compared with what the guest sees now; only the differing ranges are written. The layout and each
volume's current tree are kept beside the disk's volumes (ROOT/<disk_id>/filesystems.json).
"""
from __future__ import annotations

import copy
import json
import subprocess
import tempfile
import threading
from pathlib import Path

from . import fstree, lvm, mkfs, partitions
from .storage import DiskStore, StorageError

STATE = "filesystems.json"
BLOCK = 4096
MERGE_GAP = 64 << 10  # a dirty bitmap's granularity: closer differences are written as one range
_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


class GuestFsError(StorageError):
    pass


def _lock(disk_id: str) -> threading.Lock:
    with _guard:
        return _locks.setdefault(disk_id, threading.Lock())


def _state_file(store: DiskStore, disk_id: str) -> Path:
    return store.root / disk_id / STATE


def plan(spec: dict, disk_size: int, disk_id: str) -> dict:
    """The layout an inventory disk asks for; raises partitions.LayoutError naming what is wrong."""
    return partitions.plan(spec, disk_size, disk_id)


def seed(store: DiskStore, disk_id: str, layout: dict) -> None:
    """Write the partition table and every volume's file system into the disk (as guest writes)."""
    layout = copy.deepcopy(layout)
    size = layout["disk_size"]
    with _lock(disk_id), tempfile.TemporaryDirectory(dir=store.root / disk_id, prefix=".fs-") as tmp:
        tmp = Path(tmp)
        disk = tmp / "disk.raw"
        with open(disk, "wb") as f:
            f.truncate(size)
        script = partitions.sfdisk_script(layout)
        if script:
            r = subprocess.run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(disk)], input=script.encode(),
                               capture_output=True, timeout=60)
            if r.returncode != 0:
                raise GuestFsError(f"disk {disk_id}: sfdisk failed: {r.stderr.decode(errors='replace').strip()}")
        for vol in layout["volumes"]:
            part = tmp / f"part-{vol['name']}.img"
            with open(part, "wb") as f:
                f.truncate(vol["size"])
            vol["fs_offset"], vol["fs_size"] = vol["start"], vol["size"]
            if vol["lvm"]:
                offset, lv_size = lvm.make_pv(part, vol["lvm"]["vg"], vol["lvm"]["lv"])
                vol["fs_offset"], vol["fs_size"] = vol["start"] + offset, lv_size
            image = _build(vol, vol["files"], tmp)
            _copy_into(image, part, vol["fs_offset"] - vol["start"])
            _copy_into(part, disk, vol["start"])
        _write_differences(store, disk_id, disk, 0, size)
        _save(store, disk_id, layout)


def change(store: DiskStore, disk_id: str, volume: str, *, put: dict | None = None, remove: str | None = None) -> dict:
    """Put (add or replace) or remove one entry of a volume's tree; return the volume's new state."""
    with _lock(disk_id):
        layout = describe(store, disk_id, digests=False)
        vol = next((v for v in layout["volumes"] if v["name"] == volume), None)
        if vol is None:
            raise GuestFsError(f"disk {disk_id} has no volume {volume!r} "
                               f"(it has {', '.join(v['name'] for v in layout['volumes'])})")
        where = f"disk {disk_id} volume {volume}"
        try:
            files = fstree.put(vol["files"], put, where) if put is not None else fstree.remove(vol["files"], remove,
                                                                                               where)
        except fstree.TreeError as e:
            raise GuestFsError(str(e)) from None
        with tempfile.TemporaryDirectory(dir=store.root / disk_id, prefix=".fs-") as tmp:
            image = _build(vol, files, Path(tmp))
            _write_differences(store, disk_id, image, vol["fs_offset"], vol["fs_size"])
        vol["files"] = files
        _save(store, disk_id, layout)
        return vol


def describe(store: DiskStore, disk_id: str, *, digests: bool = True) -> dict:
    """The disk's layout and each volume's current tree (with every file's sha256 when digests)."""
    path = _state_file(store, disk_id)
    if not path.exists():
        raise GuestFsError(f"disk {disk_id} was not seeded with file systems")
    layout = json.loads(path.read_text())
    if digests:
        for vol in layout["volumes"]:
            for e in vol["files"]:
                if e["type"] == "file":
                    e["sha256"] = fstree.sha256(e)
    return layout


def _save(store: DiskStore, disk_id: str, layout: dict) -> None:
    path = _state_file(store, disk_id)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(layout, indent=1))
    tmp.replace(path)


def _build(vol: dict, files: list[dict], tmp: Path) -> Path:
    tree = tmp / f"tree-{vol['name']}"
    tree.mkdir()
    fstree.materialize(files, tree)
    image = tmp / f"fs-{vol['name']}.img"
    mkfs.build(vol["fs"], tree, files, vol["fs_size"], image, uuid=vol["uuid"], label=vol["label"])
    return image


def _copy_into(src: Path, dst: Path, offset: int) -> None:
    """src's bytes into dst at offset, skipping zero blocks (dst is sparse and zero there)."""
    zero = bytes(1 << 20)
    with open(src, "rb") as s, open(dst, "r+b") as d:
        pos = 0
        while block := s.read(1 << 20):
            if block != zero[:len(block)]:
                d.seek(offset + pos)
                d.write(block)
            pos += len(block)


def _write_differences(store: DiskStore, disk_id: str, image: Path, offset: int, length: int) -> None:
    """Write into the disk at offset the ranges of image (length bytes) that differ from what the guest sees."""
    current = store.read(disk_id, offset, length)
    new = image.read_bytes()
    if len(new) != length:
        raise GuestFsError(f"disk {disk_id}: built {len(new)} bytes for a range of {length}")
    runs: list[list[int]] = []
    for pos in range(0, length, BLOCK):
        if new[pos:pos + BLOCK] != current[pos:pos + BLOCK]:
            end = min(pos + BLOCK, length)
            if runs and pos - runs[-1][1] <= MERGE_GAP:
                runs[-1][1] = end
            else:
                runs.append([pos, end])
    for start, end in runs:
        store.guest_write(disk_id, offset + start, end - start, data=new[start:end])
