"""Giving space back, as vdsm does for the engine's disk actions, on the simulator's image files.

sparsify: what virt-sparsify --in-place does for a disk: space the guest does not use goes back to the storage while
the image stays the same volume. The simulator knows no file systems, so "unused" is "reads as zeros": clusters of the
active volume whose guest content is all zeros become unallocated (qcow2 zero clusters, discarded through qemu, so
every persistent dirty bitmap stays valid and marks them dirty, as qemu does for any discard), and zero-filled blocks
of the file become holes. Guest-visible content is byte-identical.

reduce: what vdsm does for a qcow2 volume on block storage: the logical volume shrinks to the image's end offset
(`qemu-img check`'s image-end-offset). A file's length plays the logical volume here: it is truncated to that offset.
Content and bitmaps are untouched (nothing past the end offset belongs to the image).

Both run in a worker thread, under the disk's lock in the DiskStore.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..procs import run
from .storage import DiskStore, StorageError

UNMAP_BATCH = 200  # qemu-io commands per call
RAW_BLOCK = 64 << 10


def sparsify(store: DiskStore, disk_id: str) -> None:
    with store._lock(disk_id):
        meta = store._meta(disk_id)
        path, fmt = store._top(disk_id, meta)
        if fmt == "qcow2":
            _unmap_zero_clusters(path, store._dir(disk_id))
        else:
            # Zeroed blocks may still be allocated (written zeros, or unwritten extents of a zero-range write).
            with open(path, "rb") as f:
                _unmap(path, "raw", _zero_blocks(f, [(0, path.stat().st_size)], RAW_BLOCK))
        # Whatever is left that is zero-filled in the file (unused qcow2 space) becomes holes; the file's bytes read
        # back the same.
        run("fallocate", "--dig-holes", str(path))


def reduce(store: DiskStore, disk_id: str) -> None:
    with store._lock(disk_id):
        meta = store._meta(disk_id)
        path, fmt = store._top(disk_id, meta)
        if fmt != "qcow2":
            raise StorageError(f"disk {disk_id}: only a qcow2 volume can be reduced")
        check = json.loads(run("qemu-img", "check", "--output", "json", "-f", "qcow2", str(path)))
        end = int(check["image-end-offset"])
        if path.stat().st_size > end:
            os.truncate(path, end)


def _unmap_zero_clusters(path: Path, workdir: Path) -> None:
    info = json.loads(run("qemu-img", "info", "--output", "json", "-f", "qcow2", str(path)))
    cluster = int(info.get("cluster-size") or 65536)
    extents = json.loads(run("qemu-img", "map", "--output", "json", "-f", "qcow2", str(path)))
    # Allocated in this volume (depth 0 with a host offset): zero clusters that still hold a host cluster, and data.
    mine = [e for e in extents if e.get("depth", 0) == 0 and "offset" in e]
    ranges: list[tuple[int, int]] = [(e["start"], e["length"]) for e in mine if e.get("zero") and not e.get("data")]
    data = [(e["start"], e["length"]) for e in mine if e.get("data")]
    if data:
        with tempfile.TemporaryDirectory(dir=workdir, prefix=".sparsify-") as tmp:
            raw = Path(tmp) / "guest.raw"
            run("qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(path), str(raw))
            with open(raw, "rb") as f:
                ranges += _zero_blocks(f, data, cluster)
    _unmap(path, "qcow2", ranges)


def _zero_blocks(f, extents: list[tuple[int, int]], block: int) -> list[tuple[int, int]]:
    """The whole blocks inside `extents` of the readable file f that hold only zeros."""
    zero = bytes(block)
    found = []
    for start, length in extents:
        first = -(-start // block) * block
        f.seek(first)
        for off in range(first, (start + length) // block * block, block):
            if f.read(block) == zero:
                found.append((off, block))
    return found


def _unmap(path: Path, fmt: str, ranges: list[tuple[int, int]]) -> None:
    """Zero the ranges through qemu with unmap allowed: the space goes back to the file system."""
    ranges = _merge(ranges)
    for i in range(0, len(ranges), UNMAP_BATCH):
        cmds: list[str] = []
        for off, length in ranges[i:i + UNMAP_BATCH]:
            cmds += ["-c", f"write -z -u {off} {length}"]
        run("qemu-io", "-d", "unmap", "-f", fmt, *cmds, str(path))


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for off, length in sorted(ranges):
        if out and out[-1][0] + out[-1][1] >= off:
            prev_off, prev_len = out[-1]
            out[-1] = (prev_off, max(prev_off + prev_len, off + length) - prev_off)
        else:
            out.append((off, length))
    return out
