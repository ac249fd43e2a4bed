"""Files of a restore point copied out: into a directory, or into a tar archive, keeping modes, owners, mtimes
and symlinks; directories recurse. Volumes that cannot be read are passed over and said so."""
from __future__ import annotations

import contextlib
import os
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from .filesystems import DIR, FILE, SYMLINK
from .tree import FilesError, Item, RestorePointFiles, split

PIECE = 1 << 20


def _items(files: RestorePointFiles, paths: list[str], skipped: Callable[[Item], None]
           ) -> Iterator[tuple[str, Item]]:
    """(relative name, item) for every item under `paths`: named from each path's last component ('/' itself as
    the disks below it)."""
    for path in paths:
        top = files.lookup(path)
        base = len(split(top.path)) - 1 if split(top.path) else 0
        for item in files.walk(top):
            if item.kind == "volume":
                skipped(item)
                continue
            rel = "/".join(split(item.path)[base:])
            if rel:
                yield rel, item


def _safe(rel: str) -> str:
    parts = rel.split("/")
    if any(p in ("", ".", "..") or "\0" in p for p in parts):
        raise FilesError("a name that cannot be written safely", path=rel)
    return rel


def _copy(src: BinaryIO, dst: BinaryIO) -> None:
    while piece := src.read(PIECE):
        dst.write(piece)


def to_directory(files: RestorePointFiles, paths: list[str], output: Path,
                 skipped: Callable[[Item], None] = lambda item: None) -> int:
    """Write `paths` under `output` (created if missing; nothing in it is overwritten). Owners are set when run as
    root. Returns the number of entries written."""
    output.mkdir(parents=True, exist_ok=True)
    dirs: list[tuple[Path, Item]] = []
    count = 0
    for rel, item in _items(files, paths, skipped):
        dest = output / _safe(rel)
        node = item.node
        if item.kind == DIR:
            dest.mkdir()
            dirs.append((dest, item))  # modes and mtimes after their contents are in
        elif item.kind == SYMLINK:
            os.symlink(node.target or "", dest)
        elif item.kind == FILE:
            with files.open(item) as src, open(dest, "xb") as dst:
                try:
                    _copy(src, dst)
                except BaseException:
                    dest.unlink()  # cut short (a damaged chunk, Ctrl-C): not left looking restored
                    raise
        else:
            skipped(item)
            continue
        if item.kind != DIR:
            _set_meta(dest, item)
        count += 1
    for dest, item in reversed(dirs):
        _set_meta(dest, item)
    return count


def _set_meta(dest: Path, item: Item) -> None:
    node = item.node
    link = item.kind == SYMLINK
    if os.geteuid() == 0 and node.uid is not None:
        with contextlib.suppress(OSError):
            os.lchown(dest, node.uid, node.gid if node.gid is not None else -1)
    if node.mode is not None and not link:
        os.chmod(dest, stat.S_IMODE(node.mode))
    if node.mtime is not None:
        os.utime(dest, (node.mtime, node.mtime), follow_symlinks=not link)


def to_tar(files: RestorePointFiles, paths: list[str], output: Path,
           skipped: Callable[[Item], None] = lambda item: None) -> int:
    """Write `paths` into a tar archive (gzip when the name ends .gz or .tgz). Returns the entries written. An
    archive cut short (a damaged chunk, Ctrl-C) is removed, not left to be taken for a whole one."""
    mode = "w:gz" if output.name.endswith((".gz", ".tgz")) else "w"
    tar = tarfile.open(output, mode, format=tarfile.PAX_FORMAT)
    try:
        with tar:
            return _fill_tar(tar, files, paths, skipped)
    except BaseException:
        output.unlink(missing_ok=True)
        raise


def _fill_tar(tar: tarfile.TarFile, files: RestorePointFiles, paths: list[str],
              skipped: Callable[[Item], None]) -> int:
    count = 0
    for rel, item in _items(files, paths, skipped):
        node = item.node
        info = tarfile.TarInfo(_safe(rel))
        info.mode = stat.S_IMODE(node.mode) if node.mode is not None else 0o644
        info.uid, info.gid = node.uid or 0, node.gid or 0
        info.mtime = node.mtime or 0
        if item.kind == DIR:
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        elif item.kind == SYMLINK:
            info.type, info.linkname = tarfile.SYMTYPE, node.target or ""
            tar.addfile(info)
        elif item.kind == FILE:
            info.size = node.size
            with files.open(item) as src:
                tar.addfile(info, src)
        else:
            skipped(item)
            continue
        count += 1
    return count
