"""A restore point mounted read-only over FUSE: each disk as a raw image file, DIR/<disk>.raw, for an admin's own
tools (`mount -o loop,ro`, `qemu-img`, file system checkers, forensic tools); with `files`, also the files of its
file systems under DIR/files/<disk>/<volume>/... (tree.py: partitions, LVM, ext, XFS, FAT, NTFS, Btrfs).

FUSE through mfusepy (ctypes over Debian's libfuse3, nothing to compile) in libfuse's multi-threaded loop: reads
arrive on libfuse's threads and go straight to the synchronous, thread-safe RestorePointImage, whose fetches run
on one loop thread shared by every disk. The file system parsers are not known to be thread-safe: the file tree
is walked and read under one lock. libfuse unmounts and returns on SIGINT, SIGTERM and SIGHUP (and on
`fusermount3 -u DIR`); the images, the store and the restore point's in-use hold are closed after.
"""
from __future__ import annotations

import errno
import itertools
import logging
import os
import stat
import threading
import time
from pathlib import Path
from typing import BinaryIO, Callable

import mfusepy

from ..config import Settings
from ..errors import BackupError
from .image import MIB, RestorePointImage, opened_point
from .loopthread import LoopThread
from .mounts import is_dead, is_mounted, unmount

log = logging.getLogger(__name__)

FILES = "files"  # the directory that holds the file tree
WRITING = os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND
KINDS = {"dir": stat.S_IFDIR | 0o555, "file": stat.S_IFREG | 0o444, "symlink": stat.S_IFLNK | 0o777,
         "volume": stat.S_IFDIR | 0o555}


class MountError(BackupError):
    template = "mount of restore point {backup_id} on {where}: {reason}"


def file_name(disk_name: str) -> str:
    return disk_name.replace("/", "_") + ".raw"


def _failed(e: BackupError, code: int = errno.EIO) -> mfusepy.FuseOSError:
    """A reader gets an errno; the log says what is wrong (restore point, disk, offset, path)."""
    log.error("%s", e)
    return mfusepy.FuseOSError(code)


class RestorePointView(mfusepy.Operations):
    """`/<disk>.raw` for every disk and, given a file tree (tree.RestorePointFiles), `/files/...`."""

    use_ns = True

    def __init__(self, images: dict[str, RestorePointImage], stamp: float, tree=None) -> None:
        self.images = images
        self.stamp_ns = int(stamp * 1e9)
        self.tree = tree
        self._tree_lock = threading.RLock()
        self._items: dict[str, object] = {}  # path -> tree.Item: the tree never changes
        self._open: dict[int, BinaryIO] = {}
        self._handles = itertools.count(1)

    # --- the raw images ----------------------------------------------------------------------------------------------

    def _times(self, mtime_ns: int | None = None) -> dict:
        when = self.stamp_ns if mtime_ns is None else mtime_ns
        return {"st_atime": when, "st_mtime": when, "st_ctime": when}

    def _image(self, path: str) -> RestorePointImage:
        image = self.images.get(path.lstrip("/"))
        if image is None:
            raise mfusepy.FuseOSError(errno.ENOENT)
        return image

    def _in_tree(self, path: str) -> str | None:
        """The tree's path for a path under /files (None: not under it)."""
        if self.tree is None or not (path == f"/{FILES}" or path.startswith(f"/{FILES}/")):
            return None
        return path[len(FILES) + 1:] or "/"

    def getattr(self, path: str, fh=None) -> dict:
        if path == "/":
            return {"st_mode": stat.S_IFDIR | 0o555, "st_nlink": 2, **self._times()}
        inside = self._in_tree(path)
        if inside is not None:
            return self._tree_attr(inside)
        return {"st_mode": stat.S_IFREG | 0o444, "st_nlink": 1, "st_size": self._image(path).size,
                "st_blksize": 65536, **self._times()}

    def readdir(self, path: str, fh) -> list[str]:
        if path == "/":
            return [".", "..", *self.images, *([FILES] if self.tree is not None else [])]
        inside = self._in_tree(path)
        if inside is None:
            raise mfusepy.FuseOSError(errno.ENOTDIR)
        with self._tree_lock:
            try:
                return [".", "..", *(child.node.name for child in self.tree.listdir(inside))]
            except BackupError as e:
                raise _failed(e, self._errno(e)) from None

    def open(self, path: str, flags: int) -> int:
        if flags & WRITING:
            raise mfusepy.FuseOSError(errno.EROFS)
        inside = self._in_tree(path)
        if inside is None:
            self._image(path)
            return 0
        with self._tree_lock:
            try:
                handle = self.tree.open(self._item(inside, follow=True))
            except BackupError as e:
                raise _failed(e, self._errno(e)) from None
            fh = next(self._handles)
            self._open[fh] = handle
            return fh

    def read(self, path: str, size: int, offset: int, fh) -> bytes:
        if fh in self._open:
            with self._tree_lock:
                handle = self._open[fh]
                try:
                    handle.seek(offset)
                    return handle.read(size)
                except BackupError as e:
                    raise _failed(e) from None
        try:
            return self._image(path).pread(size, offset)
        except BackupError as e:  # a corrupt or missing chunk
            raise _failed(e) from None

    def release(self, path: str, fh) -> int:
        handle = self._open.pop(fh, None)
        if handle is not None:
            with self._tree_lock:
                handle.close()
        return 0

    def readlink(self, path: str) -> str:
        inside = self._in_tree(path)
        if inside is None:
            raise mfusepy.FuseOSError(errno.EINVAL)
        with self._tree_lock:
            node = self._item(inside).node
        if node.kind != "symlink":
            raise mfusepy.FuseOSError(errno.EINVAL)
        return node.target or ""

    def statfs(self, path: str) -> dict:
        return {"f_bsize": 65536, "f_frsize": 65536, "f_namemax": 255,
                "f_blocks": sum(i.size for i in self.images.values()) // 65536}

    # --- the file tree -----------------------------------------------------------------------------------------------

    def _item(self, inside: str, follow: bool = False):
        key = f"{inside}\0{follow}"
        if key not in self._items:
            if len(self._items) > 100_000:
                self._items.clear()
            self._items[key] = self.tree.lookup(inside, follow=follow)
        return self._items[key]

    @staticmethod
    def _errno(e: BackupError) -> int:
        from .tree import NoSuchPath, NotADirectory

        return errno.ENOENT if isinstance(e, NoSuchPath) else errno.ENOTDIR if isinstance(e, NotADirectory) \
            else errno.EIO

    def _tree_attr(self, inside: str) -> dict:
        with self._tree_lock:
            try:
                node = self._item(inside).node
            except BackupError as e:
                raise mfusepy.FuseOSError(self._errno(e)) from None  # ENOENT is routine (a shell's lookups)
        mode = node.mode if node.mode is not None else KINDS.get(node.kind, stat.S_IFREG | 0o444)
        attr = {"st_mode": mode, "st_nlink": 2 if stat.S_ISDIR(mode) else 1,
                "st_size": len(node.target or "") if node.kind == "symlink" else
                (node.size if node.kind == "file" else 0),
                **self._times(int(node.mtime * 1e9) if node.mtime is not None else None)}
        if node.uid is not None:
            attr["st_uid"], attr["st_gid"] = node.uid, node.gid or 0
        return attr


def mount(settings: Settings, backup_id: str, where: Path, disks: list[str], *, files: bool = False,
          ready: Callable[[list[str]], None] = lambda names: None) -> None:
    """Mount `backup_id` (its `disks`, or all) on the directory `where` until unmounted or signalled; `files`: the
    file tree too (needs the optional `files` extra)."""
    if is_dead(where):  # a killed mount's leftover: nothing serves it, and it would refuse the new one
        log.warning("%s: a mount whose process is gone, unmounted", where)
        unmount(where)
    if not where.is_dir():
        raise MountError("not a directory", backup_id=backup_id, where=where)
    if is_mounted(where) or any(where.iterdir()):
        raise MountError("not an empty directory (or mounted already)", backup_id=backup_id, where=where)
    with LoopThread(f"mount {backup_id}") as runner, \
            opened_point(runner, settings, backup_id, "export") as (store, sealer, manifest):
        records = [manifest.disk(d) for d in disks] if disks else manifest.disks
        images = {r.name: RestorePointImage(store, sealer, manifest, r, loop=runner.loop,
                                            cache_bytes=settings.access.cache_mb * MIB,
                                            readahead_bytes=settings.access.readahead_mb * MIB)
                  for r in records}
        try:
            tree = None
            if files:
                from .tree import RestorePointFiles

                tree = RestorePointFiles(backup_id, images)
                tree.volumes  # noqa: B018 - the parsers imported and the volumes found now: a missing extra fails here
            raw = {file_name(name): image for name, image in images.items()}
            ops = RestorePointView(raw, manifest.completed_at or time.time(), tree)
            _run(ops, backup_id, where, lambda: ready([*raw, *([FILES] if tree is not None else [])]))
        finally:
            for image in images.values():
                image.close()


def _run(ops: RestorePointView, backup_id: str, where: Path, ready: Callable[[], None]) -> None:
    mounted = []

    def init(path: str) -> None:  # libfuse calls it once the mount is in place: the moment to say so
        mounted.append(True)
        ready()

    ops.init = init
    try:
        mfusepy.FUSE(ops, str(where), foreground=True, ro=True, fsname=f"olvm-backup:{backup_id}",
                     subtype="olvm-backup")
    except RuntimeError as e:
        # libfuse 3 ends its loop with an error code when a signal ended it (the signal number, turned into 8 by
        # fuse_main): after a mount, that is how a Ctrl-C or SIGTERM ends, not a failure.
        if not mounted:
            raise MountError(f"libfuse could not mount (code {e})", backup_id=backup_id, where=where) from None
