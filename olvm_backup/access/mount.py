"""A restore point mounted read-only over FUSE: each disk as a raw image file, DIR/<disk>.raw, for an admin's own
tools (`mount -o loop,ro`, `qemu-img`, file system checkers, forensic tools).

FUSE through mfusepy (ctypes over Debian's libfuse3, nothing to compile) in libfuse's multi-threaded loop: reads
arrive on libfuse's threads and go straight to the synchronous, thread-safe RestorePointImage, whose fetches run
on one loop thread shared by every disk. libfuse unmounts and returns on SIGINT, SIGTERM and SIGHUP (and on
`fusermount3 -u DIR`); the images, the store and the restore point's in-use hold are closed after.
"""
from __future__ import annotations

import errno
import logging
import os
import stat
import time
from pathlib import Path
from typing import Callable

import mfusepy

from ..config import Settings
from ..errors import BackupError
from .image import MIB, RestorePointImage, opened_point
from .loopthread import LoopThread
from .mounts import is_mounted

log = logging.getLogger(__name__)


class MountError(BackupError):
    template = "mount of restore point {backup_id} on {where}: {reason}"


def file_name(disk_name: str) -> str:
    return disk_name.replace("/", "_") + ".raw"


class RawImages(mfusepy.Operations):
    """A flat, read-only directory of `<disk>.raw` files."""

    use_ns = True

    def __init__(self, images: dict[str, RestorePointImage], stamp: float) -> None:
        self.images = images
        self.stamp_ns = int(stamp * 1e9)

    def _image(self, path: str) -> RestorePointImage:
        image = self.images.get(path.lstrip("/"))
        if image is None:
            raise mfusepy.FuseOSError(errno.ENOENT)
        return image

    def getattr(self, path: str, fh=None) -> dict:
        times = {"st_atime": self.stamp_ns, "st_mtime": self.stamp_ns, "st_ctime": self.stamp_ns}
        if path == "/":
            return {"st_mode": stat.S_IFDIR | 0o555, "st_nlink": 2, **times}
        return {"st_mode": stat.S_IFREG | 0o444, "st_nlink": 1, "st_size": self._image(path).size,
                "st_blksize": 65536, **times}

    def readdir(self, path: str, fh) -> list[str]:
        if path != "/":
            raise mfusepy.FuseOSError(errno.ENOTDIR)
        return [".", "..", *self.images]

    def open(self, path: str, flags: int) -> int:
        self._image(path)
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND):
            raise mfusepy.FuseOSError(errno.EROFS)
        return 0

    def read(self, path: str, size: int, offset: int, fh) -> bytes:
        try:
            return self._image(path).pread(size, offset)
        except BackupError as e:  # a corrupt or missing chunk: the reader gets EIO, the log says where
            log.error("%s", e)
            raise mfusepy.FuseOSError(errno.EIO) from None

    def statfs(self, path: str) -> dict:
        return {"f_bsize": 65536, "f_frsize": 65536, "f_namemax": 255,
                "f_blocks": sum(i.size for i in self.images.values()) // 65536}


def mount(settings: Settings, backup_id: str, where: Path, disks: list[str],
          ready: Callable[[list[str]], None] = lambda names: None) -> None:
    """Mount `backup_id` (its `disks`, or all) on the directory `where` until unmounted or signalled."""
    if not where.is_dir():
        raise MountError("not a directory", backup_id=backup_id, where=where)
    if is_mounted(where) or any(where.iterdir()):
        raise MountError("not an empty directory (or mounted already)", backup_id=backup_id, where=where)
    with LoopThread(f"mount {backup_id}") as runner, \
            opened_point(runner, settings, backup_id, "export") as (store, sealer, manifest):
        records = [manifest.disk(d) for d in disks] if disks else manifest.disks
        images = {file_name(r.name): RestorePointImage(store, sealer, manifest, r, loop=runner.loop,
                                                       cache_bytes=settings.access.cache_mb * MIB,
                                                       readahead_bytes=settings.access.readahead_mb * MIB)
                  for r in records}
        try:
            stamp = manifest.completed_at if manifest.completed_at else time.time()
            ops = RawImages(images, stamp)
            mounted = []

            def init(path: str) -> None:  # libfuse calls it once the mount is in place: the moment to say so
                mounted.append(True)
                ready(list(images))

            ops.init = init
            try:
                mfusepy.FUSE(ops, str(where), foreground=True, ro=True, fsname=f"olvm-backup:{backup_id}",
                             subtype="olvm-backup")
            except RuntimeError as e:
                # libfuse 3 ends its loop with an error code when a signal ended it (the signal number, turned
                # into 8 by fuse_main): after a mount, that is how a Ctrl-C or SIGTERM ends, not a failure.
                if not mounted:
                    raise MountError(f"libfuse could not mount (code {e})", backup_id=backup_id,
                                     where=where) from None
        finally:
            for image in images.values():
                image.close()
