"""Disk images as a hypervisor keeps them: a chain of volumes, snapshots as qcow2 overlays, checkpoints as
persistent dirty bitmaps, and point-in-time views for backups.

Synchronous (it runs qemu tools); the engine calls it from a worker thread and serializes operations per disk.

Layout of one disk: ROOT/<disk_id>/meta.json and its volumes. The chain is a list, base first; the last volume is
the active one the guest writes to. A volume frozen by a snapshot carries that snapshot's id. A backup freezes the
top volume the same way under the backup's id (hidden from the snapshot list) and exports it read-only while the
guest writes into a fresh overlay; ending the backup commits that overlay back.

Checkpoints are bitmaps named by checkpoint id. Like vdsm, every new overlay gets an empty enabled bitmap for each
checkpoint, so one checkpoint's changes are spread over the chain; an incremental export merges them into one
temporary bitmap on the frozen volume.
"""
from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path

from ..procs import SimProcessError, run

QEMU_FMT = {"cow": "qcow2", "raw": "raw"}
WRITE_PIECE = 16 << 20


class StorageError(SimProcessError):
    pass


def pattern_bytes(pattern: str, length: int, *, seed: int = 0, text: str = "", start: int = 0) -> bytes:
    """Deterministic content for seeding and guest writes (start = position inside the pattern)."""
    if pattern == "zero":
        return bytes(length)
    if pattern in ("text", "repeat"):
        unit = (text or "olvm-sim ").encode()
        reps = (start + length) // len(unit) + 2
        return (unit * reps)[start % len(unit):start % len(unit) + length]
    if pattern == "random":
        return random.Random(f"{seed}:{start}").randbytes(length)
    raise StorageError(f"unknown content pattern {pattern!r}")


def _alone(path: Path) -> str:
    """A qcow2 volume opened without its backing chain, so a merge can read a lower volume of that chain."""
    return "json:" + json.dumps({"driver": "qcow2", "backing": None, "file": {"driver": "file", "filename": str(path)}})


class DiskStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    # -- metadata ---------------------------------------------------------------------------------------------
    def _lock(self, disk_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(disk_id, threading.Lock())

    def _dir(self, disk_id: str) -> Path:
        return self.root / disk_id

    def _meta(self, disk_id: str) -> dict:
        path = self._dir(disk_id) / "meta.json"
        if not path.exists():
            raise StorageError(f"no image for disk {disk_id}")
        return json.loads(path.read_text())

    def _save(self, disk_id: str, meta: dict) -> None:
        path = self._dir(disk_id) / "meta.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta, indent=1))
        tmp.replace(path)

    def _path(self, disk_id: str, vol: dict) -> Path:
        return self._dir(disk_id) / vol["file"]

    def _top(self, disk_id: str, meta: dict) -> tuple[Path, str]:
        vol = meta["volumes"][-1]
        return self._path(disk_id, vol), vol["fmt"]

    def _new_overlay(self, disk_id: str, meta: dict) -> dict:
        backing, backing_fmt = self._top(disk_id, meta)
        vol = {"file": f"vol-{uuid.uuid4().hex[:12]}.qcow2", "fmt": "qcow2", "frozen_by": None}
        run("qemu-img", "create", "-q", "-f", "qcow2", "-b", backing.name, "-F", backing_fmt,
            str(self._path(disk_id, vol)))
        for cp in meta["checkpoints"]:
            run("qemu-img", "bitmap", "--add", str(self._path(disk_id, vol)), cp)
        return vol

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def create(self, disk_id: str, size: int, fmt: str) -> None:
        if fmt not in QEMU_FMT:
            raise StorageError(f"unknown disk format {fmt!r}")
        d = self._dir(disk_id)
        d.mkdir(parents=True, exist_ok=True)
        vol = {"file": f"vol-{uuid.uuid4().hex[:12]}.{QEMU_FMT[fmt]}", "fmt": QEMU_FMT[fmt], "frozen_by": None}
        run("qemu-img", "create", "-q", "-f", vol["fmt"], str(d / vol["file"]), str(size))
        self._save(disk_id, {"size": size, "format": fmt, "volumes": [vol], "checkpoints": [], "backups": {}})

    def extend(self, disk_id: str, size: int) -> None:
        """Grow the disk's virtual size, as vdsm extends an image: only the active (top) volume grows; the volumes
        snapshots froze keep the size they had."""
        with self._lock(disk_id):
            meta = self._meta(disk_id)
            if size < meta["size"]:
                raise StorageError(f"cannot shrink disk {disk_id} from {meta['size']} to {size}")
            path, fmt = self._top(disk_id, meta)
            run("qemu-img", "resize", "-q", "-f", fmt, str(path), str(size))
            meta["size"] = size
            self._save(disk_id, meta)

    def exists(self, disk_id: str) -> bool:
        return (self._dir(disk_id) / "meta.json").exists()

    def remove(self, disk_id: str) -> None:
        shutil.rmtree(self._dir(disk_id), ignore_errors=True)

    def info(self, disk_id: str) -> dict:
        meta = self._meta(disk_id)
        actual = sum(self._path(disk_id, v).stat().st_blocks * 512 for v in meta["volumes"])
        return {"virtual_size": meta["size"], "actual_size": actual, "format": meta["format"]}

    # -- guest I/O ------------------------------------------------------------------------------------------
    def seed(self, disk_id: str, content: list[dict]) -> None:
        for item in content:
            self.guest_write(disk_id, int(item["offset"]), int(item["length"]), pattern=item.get("pattern", "random"),
                             seed=int(item.get("seed", 0)), text=item.get("text", ""))

    def guest_write(self, disk_id: str, offset: int, length: int, seed: int | None = None,
                    data: bytes | None = None, *, pattern: str = "random", text: str = "") -> None:
        """What the guest does: write into the active volume through qemu, so enabled bitmaps record it."""
        with self._lock(disk_id):
            meta = self._meta(disk_id)
            if offset < 0 or length <= 0 or offset + length > meta["size"]:
                raise StorageError(f"write of {length} bytes at {offset} is outside the disk ({meta['size']} bytes)")
            path, fmt = self._top(disk_id, meta)
            if seed is None:
                seed = random.randrange(1 << 31)
            if pattern == "zero" and data is None:
                run("qemu-io", "-f", fmt, "-c", f"write -z {offset} {length}", str(path))
                return
            with tempfile.NamedTemporaryFile(dir=self._dir(disk_id), prefix=".write-") as tmp:
                done = 0
                while done < length:
                    n = min(WRITE_PIECE, length - done)
                    piece = data[done:done + n] if data is not None else pattern_bytes(
                        pattern, n, seed=seed, text=text, start=done)
                    tmp.seek(0)
                    tmp.truncate()
                    tmp.write(piece)
                    tmp.flush()
                    # qemu-io -s repeats the file's bytes as the write buffer: one piece per call.
                    run("qemu-io", "-f", fmt, "-c", f"write -s {tmp.name} {offset + done} {n}", str(path))
                    done += n

    def _stream(self, path: Path, fmt: str):
        return subprocess.Popen(["nbdcopy", "--", "[", "qemu-nbd", "-r", "-f", fmt, str(path), "]", "-"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def content_hash(self, disk_id: str, snapshot_id: str | None = None) -> str:
        """sha256 of every guest-visible byte (at a snapshot, or now)."""
        # Under the disk's lock: the read-only export's image lock would make a concurrent commit fail.
        with self._lock(disk_id):
            path, fmt = self.volume_path(disk_id, snapshot_id)
            h = hashlib.sha256()
            proc = self._stream(path, fmt)
            assert proc.stdout is not None
            while block := proc.stdout.read(4 << 20):
                h.update(block)
            _, err = proc.communicate()
        if proc.returncode != 0:
            raise StorageError(f"reading disk {disk_id} failed: {err.decode(errors='replace')}")
        return h.hexdigest()

    def read(self, disk_id: str, offset: int, length: int) -> bytes:
        path, fmt = self.volume_path(disk_id)
        start, end = offset // 512 * 512, -(-(offset + length) // 512) * 512
        window = {"driver": "raw", "offset": start, "size": end - start,
                  "file": {"driver": fmt, "file": {"driver": "file", "filename": str(path)}}}
        with tempfile.TemporaryDirectory(dir=self._dir(disk_id)) as tmp:
            out = Path(tmp) / "range.raw"
            run("qemu-img", "convert", "-U", "-O", "raw", "json:" + json.dumps(window), str(out))
            return out.read_bytes()[offset - start:offset - start + length]

    # -- snapshots ------------------------------------------------------------------------------------------
    def _freeze(self, disk_id: str, meta: dict, owner: str) -> None:
        meta["volumes"][-1]["frozen_by"] = owner
        meta["volumes"].append(self._new_overlay(disk_id, meta))

    def _merge_down(self, disk_id: str, meta: dict, index: int) -> None:
        """Commit volume index+1 into volume index, which takes its place (and its freeze owner)."""
        vols = meta["volumes"]
        lower, upper = vols[index], vols[index + 1]
        lower_path, upper_path = self._path(disk_id, lower), self._path(disk_id, upper)
        # -d: the upper volume is deleted below, so it is not emptied: emptying a qcow2 overlay writes its whole L2
        # table (1 GiB over 8 TiB), a pass over the virtual size that a host's live merge never makes; the commit
        # itself costs what the upper holds.
        run("qemu-img", "commit", "-q", "-d", "-f", "qcow2", str(upper_path))
        if lower["fmt"] == "qcow2":
            existing = self._bitmaps(lower_path)
            for name in self._bitmaps(upper_path):
                if name not in existing:
                    run("qemu-img", "bitmap", "--add", str(lower_path), name)
                run("qemu-img", "bitmap", "--merge", name, "-b", str(upper_path), "-F", "qcow2", _alone(lower_path),
                    name)
        if index + 2 < len(vols):
            child = self._path(disk_id, vols[index + 2])
            run("qemu-img", "rebase", "-u", "-f", "qcow2", "-b", lower_path.name, "-F", lower["fmt"], str(child))
        lower["frozen_by"] = upper["frozen_by"]
        upper_path.unlink()
        del vols[index + 1]

    def create_snapshot(self, disk_id: str, snapshot_id: str) -> None:
        with self._lock(disk_id):
            meta = self._meta(disk_id)
            self._freeze(disk_id, meta, snapshot_id)
            self._save(disk_id, meta)

    def remove_snapshot(self, disk_id: str, snapshot_id: str) -> None:
        with self._lock(disk_id):
            meta = self._meta(disk_id)
            index = self._index(disk_id, meta, snapshot_id)
            self._merge_down(disk_id, meta, index)
            self._save(disk_id, meta)

    def _index(self, disk_id: str, meta: dict, owner: str) -> int:
        for i, vol in enumerate(meta["volumes"]):
            if vol["frozen_by"] == owner:
                return i
        raise StorageError(f"disk {disk_id} has no volume frozen by {owner}")

    def snapshots(self, disk_id: str) -> list[str]:
        meta = self._meta(disk_id)
        return [v["frozen_by"] for v in meta["volumes"] if v["frozen_by"] and v["frozen_by"] not in meta["backups"]]

    def volume_path(self, disk_id: str, snapshot_id: str | None = None) -> tuple[Path, str]:
        meta = self._meta(disk_id)
        if snapshot_id is None:
            return self._top(disk_id, meta)
        vol = meta["volumes"][self._index(disk_id, meta, snapshot_id)]
        return self._path(disk_id, vol), vol["fmt"]

    def export_view(self, disk_id: str, snapshot_id: str | None = None, *,
                    shallow: bool = False) -> tuple[str, str, int]:
        """What a transfer of the disk (now, or at a snapshot) exports: (image for qemu, qemu format, virtual size).
        shallow: that one volume without its backing chain, as vdsm exports a single layer, so that with
        --allocation-depth the ranges the layer does not hold read as absent (imageio's holes)."""
        meta = self._meta(disk_id)
        index = len(meta["volumes"]) - 1 if snapshot_id is None else self._index(disk_id, meta, snapshot_id)
        vol = meta["volumes"][index]
        path = self._path(disk_id, vol)
        size = self._virtual_size(path, vol["fmt"])
        if shallow and vol["fmt"] == "qcow2":
            return _alone(path), vol["fmt"], size
        return str(path), vol["fmt"], size

    @staticmethod
    def _virtual_size(path: Path, fmt: str) -> int:
        info = json.loads(run("qemu-img", "info", "-U", "-f", fmt, "--output", "json", str(path)))
        return int(info["virtual-size"])

    def volumes(self, disk_id: str) -> list[dict]:
        """Each volume base first: the snapshot (or backup) that froze it (None for the active one), its virtual
        size and the bytes its file holds on storage (a disk snapshot's actual_size)."""
        meta = self._meta(disk_id)
        out = []
        for vol in meta["volumes"]:
            path = self._path(disk_id, vol)
            out.append({"frozen_by": vol["frozen_by"], "virtual_size": self._virtual_size(path, vol["fmt"]),
                        "actual_size": path.stat().st_blocks * 512})
        return out

    def revert(self, disk_id: str, snapshot_id: str, drop: list[str]) -> None:
        """Bring the disk back to a snapshot (a preview committed): the volumes above the snapshot's are dropped and
        a fresh active volume is put on top of it; the snapshot keeps its volume. `drop` names the snapshots whose
        volumes go (all above it; the engine removes those snapshots)."""
        with self._lock(disk_id):
            meta = self._meta(disk_id)
            index = self._index(disk_id, meta, snapshot_id)
            above = meta["volumes"][index + 1:]
            strangers = [v["frozen_by"] for v in above if v["frozen_by"] and v["frozen_by"] not in drop]
            if strangers:
                raise StorageError(f"disk {disk_id}: cannot revert to {snapshot_id} over {strangers}")
            del meta["volumes"][index + 1:]
            meta["volumes"].append(self._new_overlay(disk_id, meta))
            for vol in above:
                self._path(disk_id, vol).unlink(missing_ok=True)
            self._save(disk_id, meta)

    def copy_at(self, src_id: str, snapshot_id: str | None, dst_id: str, fmt: str) -> None:
        """A new image for dst_id holding src_id's guest view at a snapshot (its chain up to there, flattened)."""
        path, src_fmt = self.volume_path(src_id, snapshot_id)
        size = self._virtual_size(path, src_fmt)
        self.create(dst_id, size, fmt)
        dst, dst_fmt = self.volume_path(dst_id)
        with self._lock(src_id):  # the export's image lock would make a concurrent merge of the source fail
            run("qemu-img", "convert", "-U", "-n", "--target-is-zero", "-f", src_fmt, "-O", dst_fmt, str(path),
                str(dst))

    def chain(self, disk_id: str) -> list[dict]:
        """The volumes base first: file, format, and the snapshot that froze it (None for the active one)."""
        meta = self._meta(disk_id)
        return [dict(v, path=str(self._path(disk_id, v))) for v in meta["volumes"]]

    # -- checkpoints --------------------------------------------------------------------------------------------
    @staticmethod
    def _bitmaps(path: Path) -> list[str]:
        info = json.loads(run("qemu-img", "info", "-U", "--output", "json", str(path)))
        data = (info.get("format-specific") or {}).get("data") or {}
        return [b["name"] for b in data.get("bitmaps", [])]

    def supports_checkpoints(self, disk_id: str) -> bool:
        return self._meta(disk_id)["format"] == "cow"

    def add_checkpoint(self, disk_id: str, checkpoint_id: str) -> None:
        with self._lock(disk_id):
            self._add_checkpoint(disk_id, self._meta(disk_id), checkpoint_id)

    def _add_checkpoint(self, disk_id: str, meta: dict, checkpoint_id: str) -> None:
        path, fmt = self._top(disk_id, meta)
        if fmt != "qcow2":
            raise StorageError(f"disk {disk_id} is raw: no dirty bitmaps")
        run("qemu-img", "bitmap", "--add", str(path), checkpoint_id)
        meta["checkpoints"].append(checkpoint_id)
        self._save(disk_id, meta)

    def remove_checkpoint(self, disk_id: str, checkpoint_id: str) -> None:
        with self._lock(disk_id):
            meta = self._meta(disk_id)
            for vol in meta["volumes"]:
                path = self._path(disk_id, vol)
                if vol["fmt"] == "qcow2" and checkpoint_id in self._bitmaps(path):
                    run("qemu-img", "bitmap", "--remove", str(path), checkpoint_id)
            if checkpoint_id in meta["checkpoints"]:
                meta["checkpoints"].remove(checkpoint_id)
            self._save(disk_id, meta)

    def checkpoints(self, disk_id: str) -> list[str]:
        return list(self._meta(disk_id)["checkpoints"])

    def drop_checkpoints(self, disk_id: str) -> None:
        for cp in self.checkpoints(disk_id):
            self.remove_checkpoint(disk_id, cp)

    # -- backups ------------------------------------------------------------------------------------------------
    def begin_backup(self, disk_id: str, backup_id: str, *, from_checkpoint_id: str | None,
                     to_checkpoint_id: str | None) -> None:
        """Freeze the disk for a backup and start checkpoint to_checkpoint_id at this instant."""
        with self._lock(disk_id):
            meta = self._meta(disk_id)
            if from_checkpoint_id is not None and from_checkpoint_id not in meta["checkpoints"]:
                raise StorageError(f"disk {disk_id} has no bitmap for checkpoint {from_checkpoint_id}")
            frozen_path, frozen_fmt = self._top(disk_id, meta)
            bitmap = None
            if from_checkpoint_id is not None:
                # One bitmap on the frozen volume holding the checkpoint's changes from every volume of the chain.
                bitmap = f"backup-{backup_id}"
                run("qemu-img", "bitmap", "--add", "--disable", str(frozen_path), bitmap)
                for vol in meta["volumes"]:
                    path = self._path(disk_id, vol)
                    if vol["fmt"] == "qcow2" and from_checkpoint_id in self._bitmaps(path):
                        source = [] if path == frozen_path else ["-b", str(path), "-F", "qcow2"]
                        run("qemu-img", "bitmap", "--merge", from_checkpoint_id, *source, _alone(frozen_path), bitmap)
            if to_checkpoint_id is not None:
                # Empty on the frozen volume (nothing writes there any more); the overlay records what follows.
                self._add_checkpoint(disk_id, meta, to_checkpoint_id)
            meta["backups"][backup_id] = {"bitmap": bitmap}
            self._freeze(disk_id, meta, backup_id)
            self._save(disk_id, meta)

    def backup_view(self, disk_id: str, backup_id: str) -> tuple[Path, str, str | None]:
        """The frozen image of a backup: (path, qemu format, dirty bitmap name or None for a full)."""
        meta = self._meta(disk_id)
        if backup_id not in meta["backups"]:
            raise StorageError(f"disk {disk_id} is not in backup {backup_id}")
        vol = meta["volumes"][self._index(disk_id, meta, backup_id)]
        return self._path(disk_id, vol), vol["fmt"], meta["backups"][backup_id]["bitmap"]

    def end_backup(self, disk_id: str, backup_id: str) -> None:
        """Merge the backup's overlay away (the guest's writes meanwhile stay recorded in the bitmaps)."""
        with self._lock(disk_id):
            meta = self._meta(disk_id)
            backup = meta["backups"].get(backup_id)
            if backup is None:
                return
            index = self._index(disk_id, meta, backup_id)
            frozen = self._path(disk_id, meta["volumes"][index])
            if backup["bitmap"]:
                run("qemu-img", "bitmap", "--remove", str(frozen), backup["bitmap"])
            meta["volumes"][index]["frozen_by"] = None
            self._merge_down(disk_id, meta, index)
            del meta["backups"][backup_id]
            self._save(disk_id, meta)

    def backups(self, disk_id: str) -> list[str]:
        return list(self._meta(disk_id)["backups"])
