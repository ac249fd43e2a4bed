"""A disk map: what every byte of a disk is at one restore point.

A map is a sorted list of non-overlapping segments; each says that disk bytes
[offset, offset+length) are bytes [skip, skip+length) of chunk `digest`.
Bytes no segment covers are zero. An incremental backup's map is its parent's
map with the changed ranges laid over it, so every restore point has a
complete map of its own and restores without replaying a chain.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Iterable, Iterator


@dataclass(frozen=True, slots=True)
class Segment:
    offset: int
    length: int
    digest: str
    skip: int = 0  # where the segment starts inside the chunk

    @property
    def end(self) -> int:
        return self.offset + self.length

    def clip(self, start: int, end: int) -> "Segment | None":
        """The part of this segment inside [start, end), or None."""
        lo, hi = max(start, self.offset), min(end, self.end)
        if lo >= hi:
            return None
        return Segment(lo, hi - lo, self.digest, self.skip + (lo - self.offset))


def _union(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


class DiskMap:
    def __init__(self, size: int, segments: Iterable[Segment] = ()) -> None:
        self.size = size
        self._segments: list[Segment] = sorted(segments, key=lambda s: s.offset)
        self._check()

    def _check(self) -> None:
        end = 0
        for s in self._segments:
            if s.length <= 0 or s.offset < end or s.end > self.size or s.skip < 0:
                raise ValueError(f"bad segment {s} in a map of size {self.size}")
            end = s.end

    @property
    def segments(self) -> list[Segment]:
        return list(self._segments)

    def __iter__(self) -> Iterator[Segment]:
        return iter(self._segments)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DiskMap) and self.size == other.size and self._segments == other._segments

    def digests(self) -> set[str]:
        return {s.digest for s in self._segments}

    def data_bytes(self) -> int:
        return sum(s.length for s in self._segments)

    def overlay(self, changes: Iterable[Segment], zeros: Iterable[tuple[int, int]] = (),
                size: int | None = None) -> "DiskMap":
        """A new map: this one with `zeros` cleared and `changes` laid on top (changes win).

        `size` lets a disk grow (or shrink) between two backups.
        """
        size = self.size if size is None else size
        changes = list(changes)
        cuts = _union([(s.offset, s.end) for s in changes] + [(o, o + n) for o, n in zeros] + [(size, 1 << 62)])
        cut_ends = [end for _, end in cuts]
        kept: list[Segment] = []
        for seg in self._segments:
            pos = seg.offset
            # Cuts are disjoint and sorted, so their ends are sorted too: start at the first that ends past `pos`.
            for start, end in cuts[bisect.bisect_right(cut_ends, pos):]:
                if start >= seg.end:
                    break
                if start > pos:
                    kept.append(seg.clip(pos, start))
                pos = max(pos, end)
            if pos < seg.end:
                kept.append(seg.clip(pos, seg.end))
        return DiskMap(size, kept + changes)

    def read_plan(self, start: int, end: int) -> list[tuple[int, int, Segment | None]]:
        """(offset, length, segment or None for zeros) covering [start, end) in order: the restore's walk."""
        plan: list[tuple[int, int, Segment | None]] = []
        pos = start
        i = max(0, bisect.bisect_right([s.offset for s in self._segments], start) - 1)
        for seg in self._segments[i:]:
            if seg.offset >= end:
                break
            part = seg.clip(start, end)
            if part is None:
                continue
            if part.offset > pos:
                plan.append((pos, part.offset - pos, None))
            plan.append((part.offset, part.length, part))
            pos = part.end
        if pos < end:
            plan.append((pos, end - pos, None))
        return plan

    # Wire form: [size, [[offset, length, digest, skip], ...]] inside the manifest (msgpack).
    def to_wire(self) -> list:
        return [self.size, [[s.offset, s.length, s.digest, s.skip] for s in self._segments]]

    @classmethod
    def from_wire(cls, wire: list) -> "DiskMap":
        size, rows = wire
        return cls(size, (Segment(o, n, d, k) for o, n, d, k in rows))
