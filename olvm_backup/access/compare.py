"""What changed under a path between two restore points: added, removed and changed entries.

An entry changed when its type, size, mtime (not a directory's: it moves with its entries, listed themselves),
link target, mode or owner differ: all in the metadata already read, so cheap. Entries alike in all those are the
same unless `content` is asked: then files alike in size and mtime are read from both restore points and their
SHA-256 compared (catches a file rewritten with its mtime put back, at the cost of reading both).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterator

from .filesystems import DIR, FILE
from .tree import Item, RestorePointFiles, split


@dataclass(frozen=True)
class Change:
    what: str   # "added", "removed" or "changed"
    path: str   # as in the newer restore point (the older one's for removed)
    why: str = ""


def _entries(files: RestorePointFiles, path: str) -> dict[str, Item]:
    top = files.lookup(path)
    base = len(split(top.path))
    return {"/".join(split(item.path)[base:]): item for item in files.walk(top)}


def _digest(files: RestorePointFiles, item: Item) -> str:
    h = hashlib.sha256()
    with files.open(item) as f:
        while piece := f.read(1 << 20):
            h.update(piece)
    return h.hexdigest()


def _differences(a: Item, b: Item) -> list[str]:
    x, y = a.node, b.node
    out = []
    if x.kind != y.kind:
        return [f"{x.kind} -> {y.kind}"]
    if x.kind == FILE and x.size != y.size:
        out.append(f"size {x.size} -> {y.size}")
    if x.mtime != y.mtime and x.kind != DIR:  # a directory's moves with its entries, which are listed themselves
        out.append("mtime")
    if x.target != y.target:
        out.append(f"target {x.target} -> {y.target}")
    if x.mode != y.mode and x.mode is not None and y.mode is not None:
        out.append(f"mode {x.mode & 0o7777:o} -> {y.mode & 0o7777:o}")
    if (x.uid, x.gid) != (y.uid, y.gid):
        out.append(f"owner {x.uid}:{x.gid} -> {y.uid}:{y.gid}")
    return out


def compare(old: RestorePointFiles, new: RestorePointFiles, path: str, *, content: bool = False) -> Iterator[Change]:
    """The changes from `old` to `new` under `path`, in path order."""
    before, after = _entries(old, path), _entries(new, path)
    for rel in sorted(before.keys() | after.keys()):
        a, b = before.get(rel), after.get(rel)
        if a is None:
            yield Change("added", b.path)
        elif b is None:
            yield Change("removed", a.path)
        else:
            why = _differences(a, b)
            if not why and content and a.kind == FILE and _digest(old, a) != _digest(new, b):
                why = ["content"]
            if why:
                yield Change("changed", b.path, ", ".join(why))
