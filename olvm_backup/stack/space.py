"""Room on the embedded object store's disk: a backup checks it before it reads, `status` shows it.

Only the embedded store's disk is known: `olvm-backup up` writes in its stack file which endpoint it serves and
from which directory, so a service whose settings name that endpoint, while that stack runs, knows where its
objects land. Any other S3 (AWS, MinIO...) tells nothing of its disks through the API; when one answers that it
is full, objectstore/s3.py says so (StoreFull).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from ..config import Settings
from ..errors import BackupError, StoreFull
from .embedded import read_stack_file
from .processes import pid_alive

MIB = 1024 * 1024


def embedded_objects(settings: Settings) -> Path | None:
    """The directory the object store of `settings` keeps its objects in, when it is the embedded store of a stack
    running from this data dir; None for any other store."""
    stack = read_stack_file(settings)
    if not stack or stack.get("s3") != settings.s3.endpoint_url or not pid_alive(stack.get("pid", 0)):
        return None
    return Path(stack.get("objects") or settings.data_dir / "objects")


def free_bytes(directory: Path) -> int:
    return shutil.disk_usage(directory).free


def check_room(settings: Settings, needed: int) -> None:
    """StoreFull unless the embedded store's disk has `needed` bytes free (nothing to check for another store)."""
    directory = embedded_objects(settings)
    if directory is None:
        return
    free = free_bytes(directory)
    if free < needed:
        raise StoreFull(f"{free / MIB:.1f} MiB free in {directory}, less than the {needed / MIB:.1f} MiB this "
                        "backup reads; make room there (or remove restore points) and back up again")


def full_disk(settings: Settings, error: BackupError, needed: int) -> BackupError:
    """A store's refusal, as StoreFull when the embedded store's disk has less than `needed` bytes free: its answer
    to a full disk is a bare "500 Internal Error", which says nothing of the disk."""
    directory = embedded_objects(settings)
    if directory is None or isinstance(error, StoreFull):
        return error
    free = free_bytes(directory)
    if free >= needed:
        return error
    return StoreFull(f"{free / MIB:.1f} MiB free in {directory}; the store answered: {error}")


def room(settings: Settings) -> tuple[str, bool, str] | None:
    """`status`'s line on the embedded store's disk: where, whether a pack still fits, how much is free; None for
    a store that is not the embedded one."""
    directory = embedded_objects(settings)
    if directory is None:
        return None
    free = free_bytes(directory)
    fits = free >= settings.pipeline.pack_size
    return str(directory), fits, f"{free / MIB / 1024:.1f} GiB free" + ("" if fits else ": full, backups fail")
