"""`olvm-backup files RP ls|find|cat|get|diff`: file-level restore, reading the file systems inside a restore
point's disks straight from the repository (olvm_backup/access), without restoring or mounting anything.

Paths are `/<disk>/<volume>/<path in the file system>` (volumes.py names the volumes: p1, p2... fs, vg-lv).
"""
from __future__ import annotations

import contextlib
import fnmatch
import json
import stat
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from ..access.filesystems import DIR, SYMLINK  # no parser imported: they load when a volume is opened
from ..config import Settings
from .progress import human

if TYPE_CHECKING:
    from ..access.tree import Item, RestorePointFiles


@contextlib.contextmanager
def opened(settings: Settings, backup_id: str, by: str | None = None) -> Iterator["RestorePointFiles"]:
    from ..access.extra import dissect
    from ..access.image import open_images
    from ..access.tree import RestorePointFiles

    dissect("volume")  # the optional extra: said before the repository is opened
    with open_images(settings, backup_id, use="export", by=by) as images:
        yield RestorePointFiles(backup_id, images)


def listing(files: "RestorePointFiles", path: str) -> list["Item"]:
    """What `ls PATH` shows: a directory's (or a disk's, a volume's) entries, or the one entry a file is."""
    target = files.lookup(path, follow=True)
    return files.children(target) if target.kind in (DIR, "volume") else [files.lookup(path)]


def _when(mtime: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(mtime)) if mtime is not None else "-"


def _mode(item: "Item") -> str:
    mode = item.node.mode
    if mode is None:
        return "?---------"
    return stat.filemode(mode)


def long_line(item: "Item") -> str:
    node = item.node
    owner = f"{node.uid}:{node.gid}" if node.uid is not None else "-"
    name = node.name or item.path
    if node.kind == SYMLINK:
        name += f" -> {node.target}"
    if node.note:
        name += f"  [{node.note}]"
    return f"{_mode(item)} {owner:>11} {node.size:>12} {_when(node.mtime)} {name}"


def short_line(item: "Item") -> str:
    node = item.node
    if node.note:  # a disk or a volume: what it is, how big, or why it cannot be read
        return f"{node.name:<16} {human(node.size):>10}  {node.note}"
    return node.name + ("/" if node.kind == DIR else f" -> {node.target}" if node.kind == SYMLINK else "")


def as_json(item: "Item") -> dict:
    n = item.node
    return {"path": item.path, "name": n.name, "type": n.kind, "size": n.size,
            "mode": f"{n.mode & 0o7777:04o}" if n.mode is not None else None, "uid": n.uid, "gid": n.gid,
            "mtime": n.mtime, "target": n.target, "note": n.note or None}


def ls(settings: Settings, backup_id: str, path: str, long: bool, as_json_: bool) -> int:
    with opened(settings, backup_id) as files:
        shown = listing(files, path)
        if as_json_:
            print(json.dumps([as_json(i) for i in shown], indent=1))
            return 0
        for i in shown:
            print(long_line(i) if long else short_line(i))
    return 0


def _skipped(item: "Item") -> None:
    print(f"skipped {item.path}: {item.node.note or item.kind}", file=sys.stderr)


def find(settings: Settings, backup_id: str, pattern: str, under: str) -> int:
    """Glob on the whole path when the pattern has a '/' ('*' crosses '/'), else on the name."""
    whole = "/" in pattern
    with opened(settings, backup_id) as files:
        for item in files.walk(files.lookup(under)):
            if item.kind == "volume":
                _skipped(item)
            elif fnmatch.fnmatchcase(item.path if whole else item.node.name, pattern):
                print(item.path)
    return 0


def cat(settings: Settings, backup_id: str, path: str) -> int:
    from ..access.tree import FilesError

    with opened(settings, backup_id) as files:
        item = files.lookup(path, follow=True)
        if item.kind == DIR:
            raise FilesError("is a directory", path=path)
        out = sys.stdout.buffer
        with files.open(item) as f:
            while piece := f.read(1 << 20):
                out.write(piece)
        out.flush()
    return 0


def get(settings: Settings, backup_id: str, paths: list[str], output: str | None, tar: str | None) -> int:
    from ..access import extract

    with opened(settings, backup_id) as files:
        if tar:
            count = extract.to_tar(files, paths, Path(tar), _skipped)
            print(f"{tar}: {count} entries from {backup_id}")
        else:
            count = extract.to_directory(files, paths, Path(output), _skipped)
            print(f"{output}: {count} entries from {backup_id}")
    return 0


def diff(settings: Settings, backup_id: str, other: str, path: str, content: bool) -> int:
    from ..access.compare import compare

    counts = {"added": 0, "removed": 0, "changed": 0}
    with opened(settings, backup_id) as old, opened(settings, other) as new:
        for change in compare(old, new, path, content=content):
            counts[change.what] += 1
            mark = {"added": "+", "removed": "-", "changed": "M"}[change.what]
            print(f"{mark} {change.path}" + (f"  ({change.why})" if change.why else ""))
    print(f"{backup_id} -> {other} under {path}: {counts['added']} added, {counts['removed']} removed, "
          f"{counts['changed']} changed", file=sys.stderr)
    return 0


def _run(settings: Settings, args) -> int:
    rp, verb = args.restore_point, args.files_command
    if verb == "ls":
        return ls(settings, rp, args.path, args.long, args.json)
    if verb == "find":
        return find(settings, rp, args.pattern, args.under)
    if verb == "cat":
        return cat(settings, rp, args.path)
    if verb == "get":
        return get(settings, rp, args.paths, args.output, args.tar)
    return diff(settings, rp, args.other, args.path, args.content)


def add_files_parser(sub) -> None:
    files = sub.add_parser(
        "files", help="file-level restore: list, find, read, copy out and compare the files in a restore point",
        description="Paths are /<disk>/<volume>/<path>: `ls /` lists the disks, `ls /<disk>` their volumes (p1, "
        "p2... for partitions, fs for a file system on the whole disk, <vg>-<lv> for LVM) and what each holds. "
        "Needs the optional extra: pip install 'olvm-backup[files]'.")
    files.add_argument("restore_point", help="restore point (backup) id")
    files.set_defaults(func=_run)
    verbs = files.add_subparsers(dest="files_command", required=True)
    listing = verbs.add_parser("ls", help="list a directory (or show one entry)")
    listing.add_argument("path", nargs="?", default="/")
    listing.add_argument("--long", "-l", action="store_true", help="mode, owner (uid:gid), size, mtime (UTC)")
    listing.add_argument("--json", action="store_true", help="print the entries as JSON")
    finding = verbs.add_parser("find", help="every path matching a glob pattern: on the name, or on the whole path "
                               "when the pattern has a '/' ('*' then crosses '/')")
    finding.add_argument("pattern")
    finding.add_argument("under", nargs="?", default="/", help="where to look (default: everywhere)")
    catting = verbs.add_parser("cat", help="write a file's content to standard output")
    catting.add_argument("path")
    getting = verbs.add_parser("get", help="copy files or directories (recursively) out, keeping modes, owners "
                               "(as root), mtimes and symlinks")
    getting.add_argument("paths", nargs="+", metavar="PATH")
    where = getting.add_mutually_exclusive_group(required=True)
    where.add_argument("--output", metavar="DIR", help="directory to write into (nothing in it is overwritten)")
    where.add_argument("--tar", metavar="FILE", help="tar archive to write (gzip when FILE ends .gz or .tgz)")
    differ = verbs.add_parser("diff", help="files added, removed and changed under PATH from this restore point to "
                              "another: by type, size, mtime, link target, mode and owner")
    differ.add_argument("other", metavar="RP2", help="the restore point to compare with")
    differ.add_argument("path", nargs="?", default="/")
    differ.add_argument("--content", action="store_true",
                        help="also read files alike in size and mtime from both and compare their SHA-256")
