"""The directory tree a guest file system holds, as the inventory describes it: pure logic, no I/O but materialize().

An entry is {path, type: file|dir|symlink, mode, mtime, uid, gid} plus, for a file, its content (text, or a pattern
with a size) and, for a symlink, its target. Parents are implied (mode 0755, DEFAULT_MTIME). Paths are relative to
the file system's root, '/'-separated, without '.' or '..' parts.
"""
from __future__ import annotations

import datetime
import hashlib
import os
import re
from pathlib import Path

from .storage import pattern_bytes

DEFAULT_MTIME = 1700000000  # 2023-11-14T22:13:20Z: seeded trees are the same whenever they are built
FILE_KEYS = {"path", "type", "mode", "mtime", "uid", "gid", "text", "pattern", "seed", "size", "symlink"}


class TreeError(ValueError):
    pass


def _size(value) -> int:
    from ..inventory import size  # the inventory's size syntax (64KiB, 1MiB...)
    return size(value)


def _mode(value, default: int, where: str) -> int:
    if value is None:
        return default
    if isinstance(value, int):
        mode = value
    elif isinstance(value, str) and re.fullmatch(r"0?o?[0-7]{3,4}", value):
        mode = int(value.replace("o", ""), 8)
    else:
        raise TreeError(f"{where}: mode {value!r} is not octal (e.g. 0644 or '0644')")
    if not 0 <= mode <= 0o7777:
        raise TreeError(f"{where}: mode {value!r} out of range")
    return mode


def _mtime(value, where: str) -> int:
    """Seconds since the epoch, from an int or an ISO 8601 time (YAML may already have made it a datetime)."""
    if value is None:
        return DEFAULT_MTIME
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise TreeError(f"{where}: mtime {value!r} is neither seconds nor an ISO 8601 time") from None
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return int(value.timestamp())
    raise TreeError(f"{where}: mtime {value!r} is neither seconds nor an ISO 8601 time")


def clean_path(path: str, where: str) -> str:
    parts = [p for p in str(path).strip("/").split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise TreeError(f"{where}: path {path!r} must name something below the root, without '.' or '..'")
    if any(re.search(r"[\s\x00]", p) for p in parts):
        raise TreeError(f"{where}: path {path!r} holds white space (mkfs.xfs protofiles cannot name it)")
    return "/".join(parts)


def entry(item: dict, where: str = "tree") -> dict:
    """One inventory entry, checked and with its defaults."""
    if not isinstance(item, dict) or "path" not in item:
        raise TreeError(f"{where}: each entry needs a path")
    unknown = set(item) - FILE_KEYS
    if unknown:
        raise TreeError(f"{where}: {item['path']!r} has unknown keys {sorted(unknown)}")
    path = clean_path(item["path"], where)
    where = f"{where}: {path}"
    kind = item.get("type") or ("symlink" if "symlink" in item else "dir" if str(item["path"]).endswith("/")
                                else "file")
    if kind not in ("file", "dir", "symlink"):
        raise TreeError(f"{where}: type {kind!r} is not file, dir or symlink")
    out = {"path": path, "type": kind, "mtime": _mtime(item.get("mtime"), where),
           "uid": int(item.get("uid", 0)), "gid": int(item.get("gid", 0))}
    if kind == "symlink":
        if not item.get("symlink"):
            raise TreeError(f"{where}: a symlink needs its target")
        out.update(mode=0o777, target=str(item["symlink"]))
    elif kind == "dir":
        out["mode"] = _mode(item.get("mode"), 0o755, where)
    else:
        out["mode"] = _mode(item.get("mode"), 0o644, where)
        pattern = item.get("pattern") or ("text" if "text" in item else "random")
        text = str(item.get("text", ""))
        if "size" in item:
            length = _size(item["size"])
        elif "text" in item:
            length = len(text.encode())
        else:
            raise TreeError(f"{where}: a file needs text or a size")
        out.update(pattern=pattern, text=text, seed=int(item.get("seed", 0)), size=length)
        try:
            pattern_bytes(pattern, 0, text=text)
        except ValueError as e:
            raise TreeError(f"{where}: {e}") from None
    return out


def parse(items: list, where: str = "tree") -> list[dict]:
    """The inventory's list of entries, checked, implied parents added, sorted so that parents come first."""
    entries: dict[str, dict] = {}
    for item in items or []:
        e = entry(item, where)
        if e["path"] in entries:
            raise TreeError(f"{where}: {e['path']!r} is listed twice")
        entries[e["path"]] = e
    for path in list(entries):
        parts = path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent not in entries:
                entries[parent] = {"path": parent, "type": "dir", "mode": 0o755, "mtime": DEFAULT_MTIME, "uid": 0,
                                   "gid": 0}
            elif entries[parent]["type"] != "dir":
                raise TreeError(f"{where}: {parent!r} is a {entries[parent]['type']}, yet {path!r} is below it")
    return [entries[p] for p in sorted(entries, key=lambda p: p.split("/"))]


def content(e: dict) -> bytes:
    """The bytes of a file entry."""
    if e["pattern"] == "text" and len(e["text"].encode()) == e["size"]:
        return e["text"].encode()
    return pattern_bytes(e["pattern"], e["size"], seed=e["seed"], text=e["text"])


def sha256(e: dict) -> str:
    return hashlib.sha256(content(e)).hexdigest()


def put(entries: list[dict], item: dict, where: str = "tree") -> list[dict]:
    """The tree with one entry added or replaced (a file replaced keeps nothing of the old one)."""
    new = entry(item, where)
    kept = [e for e in entries if e["path"] != new["path"]]
    if any(e["path"].startswith(new["path"] + "/") for e in kept) and new["type"] != "dir":
        raise TreeError(f"{where}: {new['path']!r} is a directory with entries; remove them first")
    return parse([dict(_spec(e)) for e in kept] + [_spec(new)], where)


def remove(entries: list[dict], path: str, where: str = "tree") -> list[dict]:
    """The tree without path (and, for a directory, without what it holds)."""
    path = clean_path(path, where)
    if not any(e["path"] == path for e in entries):
        raise TreeError(f"{where}: no {path!r} to remove")
    return [e for e in entries if e["path"] != path and not e["path"].startswith(path + "/")]


def _spec(e: dict) -> dict:
    """An entry back in inventory form (parse() accepts it as is)."""
    out = {k: e[k] for k in ("path", "type", "mtime", "uid", "gid")}
    if e["type"] == "symlink":
        out["symlink"] = e["target"]
    else:
        out["mode"] = e["mode"]
    if e["type"] == "file":
        out.update(pattern=e["pattern"], text=e["text"], seed=e["seed"], size=e["size"])
    return out


def materialize(entries: list[dict], root: Path, *, root_mtime: int = DEFAULT_MTIME) -> None:
    """Write the tree under root (an empty directory) with its modes and times, parents' times set last."""
    for e in entries:
        target = root / e["path"]
        if e["type"] == "dir":
            target.mkdir()
        elif e["type"] == "symlink":
            target.symlink_to(e["target"])
        else:
            target.write_bytes(content(e))
    for e in reversed(entries):  # children before parents: writing into a directory changes its mtime
        target = root / e["path"]
        os.chown(target, e["uid"], e["gid"], follow_symlinks=False)
        if e["type"] != "symlink":
            os.chmod(target, e["mode"])
        os.utime(target, (e["mtime"], e["mtime"]), follow_symlinks=False)
    os.chmod(root, 0o755)
    os.utime(root, (root_mtime, root_mtime))
