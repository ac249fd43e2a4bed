"""The files of a restore point as one tree: `/` holds its disks, `/<disk>` the disk's volumes (volumes.py names
them), `/<disk>/<volume>/...` the files of the file system on it.

Paths are absolute, '/'-separated; '.' and '..' are resolved by name, never through a symlink. A symlink in the
middle of a path is followed inside its volume (an absolute target counts from the volume's root, as the guest
sees it when that volume is its root); the last component is not followed unless asked (`ls` shows the link,
`cat` reads what it points to). FAT and NTFS names match case-insensitively, as their guests do.
"""
from __future__ import annotations

import stat
from dataclasses import dataclass, replace
from typing import BinaryIO, Iterator, Mapping

from ..errors import BackupError
from .filesystems import DIR, FILE, SYMLINK, FileSystem, Node, open_filesystem
from .image import RestorePointImage
from .volumes import Volume, discover

MAX_LINKS = 40  # as Linux's ELOOP


class FilesError(BackupError):
    template = "{path}: {reason}"


class NoSuchPath(FilesError):
    pass


class NotADirectory(FilesError):
    pass


class UnreadableVolume(FilesError):
    pass


@dataclass
class Item:
    """A node at a path of the tree: a disk, a volume or a file system's node."""

    path: str
    node: Node
    volume: Volume | None = None   # the volume it is in (or is)
    fs: FileSystem | None = None   # the file system it is in

    @property
    def kind(self) -> str:
        return self.node.kind


def split(path: str) -> list[str]:
    """'/a/./b/../c/' -> ['a', 'c']."""
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
        else:
            parts.append(part)
    return parts


def join(parts: list[str]) -> str:
    return "/" + "/".join(parts)


class RestorePointFiles:
    def __init__(self, backup_id: str, images: Mapping[str, RestorePointImage]) -> None:
        self.backup_id = backup_id
        self.images = dict(images)
        self._volumes: dict[str, list[Volume]] | None = None
        self._filesystems: dict[tuple[str, str], FileSystem] = {}

    # --- the upper levels: disks and volumes -------------------------------------------------------------------------

    @property
    def volumes(self) -> dict[str, list[Volume]]:
        if self._volumes is None:
            self._volumes = discover(self.images)
        return self._volumes

    def _disk_node(self, name: str) -> Node:
        image = self.images[name]
        return Node(name, DIR, image.size, stat.S_IFDIR | 0o555,
                    note=f"disk, {len(self.volumes[name])} volume(s)")

    def _volume_node(self, volume: Volume) -> Node:
        return Node(volume.name, DIR if volume.readable else "volume", volume.size,
                    stat.S_IFDIR | 0o555 if volume.readable else None, note=volume.describe())

    def filesystem(self, volume: Volume) -> FileSystem:
        key = (volume.disk, volume.name)
        if key not in self._filesystems:
            where = f"/{volume.disk}/{volume.name}"
            if not volume.readable:
                raise UnreadableVolume(f"the volume cannot be read: {volume.describe()}", path=where)
            try:
                self._filesystems[key] = open_filesystem(volume.kind, volume.open())
            except BackupError:
                raise
            except Exception as e:  # a parser failing on a damaged or unsupported file system
                raise UnreadableVolume(f"the {volume.kind} file system cannot be read: {e}", path=where) from None
        return self._filesystems[key]

    # --- lookups -----------------------------------------------------------------------------------------------------

    def lookup(self, path: str, *, follow: bool = False) -> Item:
        """The item at `path`; `follow`: when it is a symlink, what it points to."""
        parts = split(path)
        if not parts:
            return Item("/", Node("", DIR, 0, stat.S_IFDIR | 0o555, note=f"restore point {self.backup_id}"))
        disk = parts[0]
        if disk not in self.images:
            raise NoSuchPath(f"no disk {disk!r} in restore point {self.backup_id} (disks: "
                             f"{', '.join(self.images) or 'none'})", path=path)
        if len(parts) == 1:
            return Item(join(parts), self._disk_node(disk))
        volume = next((v for v in self.volumes[disk] if v.name == parts[1]), None)
        if volume is None:
            raise NoSuchPath(f"no volume {parts[1]!r} on disk {disk} (volumes: "
                             f"{', '.join(v.name for v in self.volumes[disk]) or 'none'})", path=path)
        if len(parts) == 2:
            return Item(join(parts), self._volume_node(volume), volume)
        fs = self.filesystem(volume)
        return self._walk(fs, volume, parts[:2], parts[2:], follow, path)

    def _walk(self, fs: FileSystem, volume: Volume, top: list[str], rest: list[str], follow: bool,
              asked: str) -> Item:
        node, where, links = fs.root(), [], 0
        pending = list(rest)
        while pending:
            name = pending.pop(0)
            if name == "..":
                where = where[:-1]
                node = self._at(fs, where, asked)
                continue
            if node.kind != DIR:
                raise NotADirectory("not a directory: " + join(top + where), path=asked)
            child = fs.child(node, name)
            if child is None:
                raise NoSuchPath("no such file or directory", path=asked)
            if child.kind == SYMLINK and (pending or follow):
                links += 1
                if links > MAX_LINKS:
                    raise FilesError("too many levels of symbolic links", path=asked)
                target = child.target or ""
                if target.startswith("/"):
                    where = []
                pending = [p for p in target.split("/") if p not in ("", ".")] + pending
                node = self._at(fs, where, asked)
                continue
            node, where = child, where + [child.name]
        return Item(join(top + where), replace(node, name=(top + where)[-1] if where else top[-1]), volume, fs)

    def _at(self, fs: FileSystem, where: list[str], asked: str) -> Node:
        node = fs.root()
        for name in where:
            child = fs.child(node, name)
            if child is None:
                raise NoSuchPath("no such file or directory", path=asked)
            node = child
        return node

    def listdir(self, path: str) -> list[Item]:
        """What the directory at `path` holds (a symlink to one is followed)."""
        item = self.lookup(path, follow=True)
        return self.children(item)

    def children(self, item: Item) -> list[Item]:
        parts = split(item.path)
        if item.kind == "volume":
            self.filesystem(item.volume)  # raises UnreadableVolume, saying why
        if item.kind != DIR:
            raise NotADirectory("not a directory", path=item.path)
        if not parts:
            return [Item(join([d]), self._disk_node(d)) for d in self.images]
        if len(parts) == 1:
            return [Item(join(parts + [v.name]), self._volume_node(v), v) for v in self.volumes[parts[0]]]
        fs = item.fs or self.filesystem(item.volume)
        node = item.node if item.fs is not None else fs.root()
        return [Item(join(parts + [c.name]), c, item.volume, fs) for c in fs.children(node)]

    def walk(self, item: Item, *, skip_unreadable: bool = True) -> Iterator[Item]:
        """`item` and everything below it, depth first, parents before children. Volumes that cannot be read are
        yielded but not entered (or raise, unless `skip_unreadable`)."""
        yield item
        if item.kind != DIR:
            return
        try:
            children = self.children(item)
        except UnreadableVolume as e:
            if not skip_unreadable:
                raise
            yield Item(item.path, replace(item.node, kind="volume", note=e.reason), item.volume)  # said, not entered
            return
        for child in children:
            if child.kind == "volume":
                yield child
                continue
            yield from self.walk(child, skip_unreadable=skip_unreadable)

    def open(self, item: Item) -> BinaryIO:
        if item.kind != FILE or item.fs is None:
            raise FilesError("not a regular file", path=item.path)
        return item.fs.open(item.node)
