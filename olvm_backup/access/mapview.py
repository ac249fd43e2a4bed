"""A disk map indexed for random access: which chunk ranges and which holes make up any byte range.

DiskMap.read_plan walks the map from the start for a restore that reads every byte once; random access (a file
system parser reading 4 KiB here and there) needs the segment for an offset in O(log n), so the segments' offsets
are indexed once here.
"""
from __future__ import annotations

import bisect

from ..format.diskmap import DiskMap, Segment


class MapView:
    def __init__(self, disk_map: DiskMap) -> None:
        self.size = disk_map.size
        self._segments = disk_map.segments
        self._offsets = [s.offset for s in self._segments]

    def plan(self, start: int, end: int) -> list[tuple[int, int, Segment | None]]:
        """(offset, length, segment clipped to the range, or None for zeros) covering [start, end) in order."""
        end = min(end, self.size)
        out: list[tuple[int, int, Segment | None]] = []
        pos = start
        i = max(0, bisect.bisect_right(self._offsets, start) - 1)
        while pos < end and i < len(self._segments):
            seg = self._segments[i]
            if seg.offset >= end:
                break
            part = seg.clip(pos, end)
            if part is not None:
                if part.offset > pos:
                    out.append((pos, part.offset - pos, None))
                out.append((part.offset, part.length, part))
                pos = part.end
            i += 1
        if pos < end:
            out.append((pos, end - pos, None))
        return out

    def extents(self, offset: int, length: int) -> list[tuple[int, int, bool]]:
        """(start, length, is_data) covering [offset, offset+length) clipped to the disk; adjacent data segments
        are merged (a caller asks what is allocated, not which chunk holds it)."""
        out: list[tuple[int, int, bool]] = []
        for start, n, seg in self.plan(offset, offset + length):
            data = seg is not None
            if out and out[-1][2] == data and out[-1][0] + out[-1][1] == start:
                out[-1] = (out[-1][0], out[-1][1] + n, data)
            else:
                out.append((start, n, data))
        return out
