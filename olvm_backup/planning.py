"""Cutting disks into read tasks and extents into chunks: aligned, fixed-size, zero-skipping."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

MIB = 1024 * 1024
DEFAULT_CHUNK_SIZE = 1 * MIB
DEFAULT_TASK_SIZE = 128 * MIB


@dataclass(frozen=True)
class Extent:
    """An imageio extent: `data` False means the range reads as zeros (hole or zero cluster)."""

    start: int
    length: int
    data: bool

    @property
    def end(self) -> int:
        return self.start + self.length


def task_ranges(size: int, task_size: int = DEFAULT_TASK_SIZE) -> list[tuple[int, int]]:
    """[(offset, length)] covering [0, size) in task_size steps (the last may be short)."""
    return [(o, min(task_size, size - o)) for o in range(0, size, task_size)]


def read_tasks(size: int, extents: list[Extent], task_size: int, tasks_at_once: int) -> list[tuple[int, int, int]]:
    """[(offset, length, bytes to read)] covering [0, size): task_size ranges, the consecutive ones joined while
    the data they read together stays within a share of the disk's (its data over `tasks_at_once`, at most
    task_size). A task is cheap to redo because it reads little, whatever its span; an incremental's few dirty
    megabytes, or a sparse disk's holes, then make a few tasks for the readers to share, not one per range, each
    paying a round of Kafka and imageio requests for a megabyte or nothing."""
    spans = [(o, n, d) for (o, n), d in zip(task_ranges(size, task_size), range_data(size, extents, task_size),
                                            strict=True)]
    share = max(1, min(task_size, -(-sum(d for _, _, d in spans) // max(1, tasks_at_once))))
    tasks: list[tuple[int, int, int]] = []
    for offset, length, data in spans:
        if tasks and tasks[-1][2] + data <= share:
            start, span, read = tasks[-1]
            tasks[-1] = (start, span + length, read + data)
        else:
            tasks.append((offset, length, data))
    return tasks


def range_data(size: int, extents: Iterable[Extent], task_size: int) -> list[int]:
    """Bytes holding data in each task_size range of [0, size), in one pass over the extents: clipping every extent
    list to every range cost ranges x extents, a minute for an 8 TiB thin disk with a few hundred pieces of data."""
    found = [0] * -(-size // task_size)
    for e in extents:
        start, end = max(0, e.start), min(size, e.end)
        while e.data and start < end:
            i = start // task_size
            stop = min(end, (i + 1) * task_size)
            found[i] += stop - start
            start = stop
    return found


def connection_share(max_readers: int, tasks_at_once: int) -> int:
    """Connections one read task may open to its disk's ticket when `tasks_at_once` tasks of that disk may run
    side by side: together they stay within the ticket's `max_readers`. Beyond it a connection would wait for
    a free one, and tasks each holding some connections while waiting on their last could wait on each other."""
    return max(1, max_readers // max(1, tasks_at_once))


def group_waves(sizes: list[int], wave_bytes: int) -> list[list[int]]:
    """Consecutive task indexes grouped into waves of about wave_bytes each (at least one task per wave;
    tasks of size 0 join the wave at hand)."""
    waves: list[list[int]] = []
    size = wave_bytes
    for i, length in enumerate(sizes):
        if size >= wave_bytes:
            waves.append([])
            size = 0
        waves[-1].append(i)
        size += length
    return waves


def clip_extents(extents: Iterable[Extent], start: int, end: int) -> list[Extent]:
    out = []
    for e in extents:
        lo, hi = max(start, e.start), min(end, e.end)
        if lo < hi:
            out.append(Extent(lo, hi - lo, e.data))
    return out


def merge_extents(extents: Iterable[Extent]) -> list[Extent]:
    """Join touching extents of the same kind (imageio answers with many small ones)."""
    out: list[Extent] = []
    for e in extents:
        if out and out[-1].data == e.data and out[-1].end == e.start:
            out[-1] = Extent(out[-1].start, out[-1].length + e.length, e.data)
        else:
            out.append(e)
    return out


def chunk_ranges(extents: Iterable[Extent], chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[tuple[int, int]]:
    """Data ranges split at absolute multiples of chunk_size, so the same disk bytes give the same chunks."""
    for e in merge_extents(x for x in extents if x.data):
        pos = e.start
        while pos < e.end:
            boundary = (pos // chunk_size + 1) * chunk_size
            stop = min(boundary, e.end)
            yield pos, stop - pos
            pos = stop


def data_bytes(extents: Iterable[Extent], start: int, end: int) -> int:
    """Bytes of [start, end) that hold data (what a reader will read there)."""
    return sum(e.length for e in clip_extents(extents, start, end) if e.data)


def zero_ranges(extents: Iterable[Extent]) -> list[tuple[int, int]]:
    return [(e.start, e.length) for e in merge_extents(x for x in extents if not x.data)]
