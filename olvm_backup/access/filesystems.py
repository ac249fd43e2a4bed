"""File systems read with the dissect parsers (optional AGPL extra, extra.py), behind one small interface.

Each parser has its own object model (ext and XFS inodes, FAT directory entries, NTFS MFT records, Btrfs inodes):
here each becomes a `Node` with what `ls --long`, `get` and `diff` need (kind, size, mode, owner, mtime, link
target), its children and its content. File systems without POSIX modes or owners (FAT, NTFS) get the modes a
Linux mount would show (0755 directories, 0644 files, 0444 read-only ones) and no owner.
"""
from __future__ import annotations

import stat
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO

from .extra import dissect

DIR, FILE, SYMLINK, OTHER = "dir", "file", "symlink", "other"


@dataclass
class Node:
    name: str
    kind: str                  # DIR, FILE, SYMLINK or OTHER (devices, fifos, sockets)
    size: int = 0
    mode: int | None = None    # st_mode: type and permission bits
    uid: int | None = None
    gid: int | None = None
    mtime: float | None = None
    target: str | None = None  # a symlink's
    note: str = ""             # a disk's or a volume's: what it is, or why it cannot be read
    ref: Any = field(default=None, repr=False, compare=False)  # the parser's object


def _kind(mode: int) -> str:
    return DIR if stat.S_ISDIR(mode) else FILE if stat.S_ISREG(mode) else SYMLINK if stat.S_ISLNK(mode) else OTHER


def _seconds(when: datetime | None) -> float | None:
    return when.timestamp() if when is not None else None


class FileSystem:
    kind = ""
    case_sensitive = True

    def root(self) -> Node:
        raise NotImplementedError

    def children(self, node: Node) -> list[Node]:
        raise NotImplementedError

    def child(self, node: Node, name: str) -> Node | None:
        """The entry `name` of directory `node` (matched by case when the file system's guests do), or None."""
        children = self.children(node)
        exact = next((c for c in children if c.name == name), None)
        if exact is not None or self.case_sensitive:
            return exact
        return next((c for c in children if c.name.lower() == name.lower()), None)

    def open(self, node: Node) -> BinaryIO:
        return node.ref.open()


class _InodeFileSystem(FileSystem):
    """ext, XFS and Btrfs: POSIX inodes, `listdir()` by name, `open()`; each says only its parser and where its
    inodes keep the mode and owner."""

    parser: tuple[str, str] = ("", "")  # the dissect module and its file system class

    def __init__(self, fh: BinaryIO) -> None:
        module, name = self.parser
        self.fs = getattr(dissect(module), name)(fh)

    def _owner(self, inode: Any) -> tuple[int, int, int]:
        raise NotImplementedError

    def _node(self, name: str, inode: Any) -> Node:
        mode, uid, gid = self._owner(inode)
        kind = _kind(mode)
        return Node(name, kind, inode.size if kind != DIR else 0, mode, uid, gid, inode.mtime_ns / 1e9,
                    inode.link if kind == SYMLINK else None, ref=inode)

    def root(self) -> Node:
        return self._node("", self.fs.get("/"))

    def children(self, node: Node) -> list[Node]:
        return [self._node(name, inode) for name, inode in sorted(node.ref.listdir().items())
                if name not in (".", "..")]

    def child(self, node: Node, name: str) -> Node | None:
        inode = node.ref.listdir().get(name) if name not in (".", "..") else None  # one inode read, not the whole dir
        return self._node(name, inode) if inode is not None else None


class ExtFileSystem(_InodeFileSystem):
    kind = "ext"
    parser = ("extfs", "ExtFS")

    def _owner(self, inode: Any) -> tuple[int, int, int]:
        raw = inode.inode
        uid = raw.i_uid | (getattr(raw, "i_uid_high", 0) or 0) << 16
        gid = raw.i_gid | (getattr(raw, "i_gid_high", 0) or 0) << 16
        return raw.i_mode, uid, gid


class XfsFileSystem(_InodeFileSystem):
    kind = "xfs"
    parser = ("xfs", "XFS")

    def _owner(self, inode: Any) -> tuple[int, int, int]:
        raw = inode.inode
        return raw.di_mode, raw.di_uid, raw.di_gid


class BtrfsFileSystem(_InodeFileSystem):
    kind = "btrfs"
    parser = ("btrfs", "Btrfs")

    def _owner(self, inode: Any) -> tuple[int, int, int]:
        return inode.mode, inode.uid, inode.gid


class FatFileSystem(FileSystem):
    kind = "fat"
    case_sensitive = False

    def __init__(self, fh: BinaryIO) -> None:
        self.fs = dissect("fat.fat").FATFS(fh)

    @staticmethod
    def _name(entry: Any) -> str:
        if entry.ldirents:
            return entry.name
        # A short name with no long one: Windows and Linux show it lower-cased where the entry says so (NT bits).
        base, _, ext = entry.short_name.partition(".")
        flags = entry.dirent.DIR_NTRes
        base = base.lower() if flags & 0x08 else base
        ext = ext.lower() if flags & 0x10 else ext
        return f"{base}.{ext}" if ext else base

    def _node(self, entry: Any) -> Node:
        if entry.is_directory():
            return Node(self._name(entry), DIR, 0, stat.S_IFDIR | 0o755, mtime=_seconds(entry.mtime), ref=entry)
        perm = 0o444 if entry.is_readonly() else 0o644
        return Node(self._name(entry), FILE, entry.size, stat.S_IFREG | perm, mtime=_seconds(entry.mtime), ref=entry)

    def root(self) -> Node:
        return Node("", DIR, 0, stat.S_IFDIR | 0o755, ref=self.fs.root)

    def children(self, node: Node) -> list[Node]:
        return sorted((self._node(e) for e in node.ref.iterdir()
                       if not e.is_volume_id() and e.short_name not in (".", "..")), key=lambda n: n.name)


class NtfsFileSystem(FileSystem):
    kind = "ntfs"
    case_sensitive = False

    def __init__(self, fh: BinaryIO) -> None:
        self._ntfs = dissect("ntfs")
        self.fs = self._ntfs.NTFS(fh)
        self._si = dissect("ntfs.c_ntfs").ATTRIBUTE_TYPE_CODE.STANDARD_INFORMATION

    def _node(self, name: str, record: Any) -> Node:
        try:
            si = record.attributes[self._si][0]
            mtime, readonly = si.last_modification_time.timestamp(), bool(si.file_attributes & 0x1)
        except (KeyError, IndexError, AttributeError):
            mtime, readonly = None, False
        if record.is_symlink():
            return Node(name, SYMLINK, 0, stat.S_IFLNK | 0o777, mtime=mtime,
                        target=record.reparse_point_substitute_name.replace("\\", "/"), ref=record)
        if record.is_dir():
            return Node(name, DIR, 0, stat.S_IFDIR | 0o755, mtime=mtime, ref=record)
        return Node(name, FILE, record.size(), stat.S_IFREG | (0o444 if readonly else 0o644), mtime=mtime,
                    ref=record)

    def root(self) -> Node:
        return self._node("", self.fs.mft.get(""))

    def children(self, node: Node) -> list[Node]:
        top = node.name == "" and node.ref.segment == 5
        out = []
        for name, record in sorted(node.ref.listdir(dereference=True, ignore_dos=True).items()):
            if name == "." or (top and name.startswith("$")):
                continue  # the MFT's own metadata files, hidden as Windows hides them
            out.append(self._node(name, record))
        return out


PARSERS: dict[str, type[FileSystem]] = {
    "ext": ExtFileSystem, "xfs": XfsFileSystem, "fat": FatFileSystem, "ntfs": NtfsFileSystem,
    "btrfs": BtrfsFileSystem,
}


def open_filesystem(kind: str, fh: BinaryIO) -> FileSystem:
    """The file system of `kind` (probe.identify's name) read from `fh`."""
    return PARSERS[kind](fh)
