"""The subset of the engine's search language that clients use: `name=web*`, `tag=gold`, `a=1 and b=2`,
`page N`, `sortby X [desc]`, and bare words matched against the free text of an entity."""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Callable

_TERM = re.compile(r"^\s*([\w.]+)\s*(!=|>=|<=|=|>|<)\s*(.*?)\s*$")


@dataclass
class Query:
    terms: list[tuple[str, str, str]] = field(default_factory=list)
    words: list[str] = field(default_factory=list)
    page: int | None = None
    sortby: str | None = None
    descending: bool = False


def parse(text: str | None) -> Query:
    q = Query()
    if not text:
        return q
    text = text.strip()
    m = re.search(r"\bpage\s+(\d+)\s*$", text, re.I)
    if m:
        q.page = int(m.group(1))
        text = text[:m.start()].strip()
    m = re.search(r"\bsortby\s+([\w.]+)(\s+(asc|desc))?\s*$", text, re.I)
    if m:
        q.sortby, q.descending = m.group(1), (m.group(3) or "").lower() == "desc"
        text = text[:m.start()].strip()
    for part in re.split(r"\s+and\s+", text, flags=re.I) if text else []:
        tm = _TERM.match(part)
        if tm:
            q.terms.append((tm.group(1).lower(), tm.group(2), tm.group(3).strip("'\"")))
        else:
            q.words.extend(part.split())
    return q


def _cmp(values: list[str], op: str, wanted: str, case_sensitive: bool) -> bool:
    if not case_sensitive:
        values, wanted = [v.lower() for v in values], wanted.lower()
    if op in ("=", "!="):
        hit = any(fnmatch.fnmatchcase(v, wanted) for v in values)
        return hit if op == "=" else not hit
    try:
        nums = [float(v) for v in values]
        w = float(wanted)
    except ValueError:
        nums, w = values, wanted  # type: ignore[assignment]
    ops: dict[str, Callable] = {">": lambda a: a > w, "<": lambda a: a < w, ">=": lambda a: a >= w,
                                "<=": lambda a: a <= w}
    return any(ops[op](v) for v in nums)


def select(items: list[dict], query: str | None, fields: dict[str, Callable[[dict], list[str]]], *,
           case_sensitive: bool = False, max_items: int | None = None,
           text: Callable[[dict], str] = lambda e: " ".join(str(v) for v in e.values())) -> list[dict]:
    """The items the query selects, in the query's order, one page of max_items when it asks for a page."""
    q = parse(query)
    out = []
    for item in items:
        ok = True
        for key, op, wanted in q.terms:
            getter = fields.get(key)
            if getter is None or not _cmp([str(v) for v in getter(item)], op, wanted, case_sensitive):
                ok = False
                break
        if ok and q.words:
            blob = text(item) if case_sensitive else text(item).lower()
            ok = all((w if case_sensitive else w.lower()) in blob for w in q.words)
        if ok:
            out.append(item)
    if q.sortby and q.sortby.lower() in fields:
        getter = fields[q.sortby.lower()]
        out.sort(key=lambda e: [str(v) for v in getter(e)], reverse=q.descending)
    if q.page is not None and max_items:
        start = (q.page - 1) * max_items
        return out[start:start + max_items]
    return out[:max_items] if max_items is not None else out
