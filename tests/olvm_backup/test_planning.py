"""Task and chunk planning: aligned, complete, zero-skipping."""
from __future__ import annotations

from olvm_backup.planning import (
    Extent, chunk_ranges, clip_extents, connection_share, data_bytes, read_tasks, task_ranges, zero_ranges,
)

MIB = 1 << 20


def test_tasks_cover_the_disk_exactly():
    ranges = task_ranges(10 * MIB + 5, 4 * MIB)
    assert ranges == [(0, 4 * MIB), (4 * MIB, 4 * MIB), (8 * MIB, 2 * MIB + 5)]


def test_chunks_split_at_absolute_boundaries_and_skip_zero_extents():
    extents = [Extent(0, MIB // 2, True), Extent(MIB // 2, MIB // 2, True), Extent(MIB, 2 * MIB, False),
               Extent(3 * MIB + 100, MIB, True)]
    assert list(chunk_ranges(extents, MIB)) == [(0, MIB), (3 * MIB + 100, MIB - 100), (4 * MIB, 100)]
    assert zero_ranges(extents) == [(MIB, 2 * MIB)]


def test_clipping_to_a_task():
    extents = [Extent(0, 10 * MIB, True)]
    assert clip_extents(extents, 4 * MIB, 6 * MIB) == [Extent(4 * MIB, 2 * MIB, True)]


def test_tasks_reading_one_disk_at_once_stay_within_its_tickets_readers():
    for max_readers in (1, 2, 7, 8, 16):
        for tasks in (1, 2, 3, 4, 8):
            share = connection_share(max_readers, tasks)
            assert share >= 1, "a task always gets a connection"
            if tasks <= max_readers:
                assert tasks * share <= max_readers
                assert tasks * (share + 1) > max_readers, "and no fewer than the ticket allows"
    assert connection_share(8, 4) == 2
    assert connection_share(8, 0) == 8  # no partitions configured: one task at a time


def covers_exactly(tasks, size) -> bool:
    return [t[0] for t in tasks] == [0] + [o + n for o, n, _ in tasks[:-1]] and tasks[-1][0] + tasks[-1][1] == size


def test_read_tasks_are_cut_by_what_they_read():
    size, task = 4096 * MIB, 128 * MIB
    # Dense data: one task per range, as before.
    dense = read_tasks(size, [Extent(0, size, True)], task, 4)
    assert dense == [(o, n, n) for o, n in task_ranges(size, task)]
    # An incremental: 1 MiB dirty in each of the 32 ranges. Four tasks of 8 MiB to read, not 32 of 1 MiB.
    dirty = [Extent(i * task + 5 * MIB, MIB, True) for i in range(32)]
    inc = read_tasks(size, dirty, task, 4)
    assert covers_exactly(inc, size)
    assert [d for _, _, d in inc] == [8 * MIB] * 4
    assert all(d == data_bytes(dirty, o, o + n) for o, n, d in inc)
    # A sparse full: holes join the task before them; no task reads more than task_size.
    sparse = [Extent(0, 300 * MIB, True), Extent(300 * MIB, 3000 * MIB, False), Extent(3300 * MIB, 796 * MIB, True)]
    full = read_tasks(size, sparse, task, 4)
    assert covers_exactly(full, size)
    assert all(d <= task for _, _, d in full) and sum(d for _, _, d in full) == 1096 * MIB
    assert len(full) < len(task_ranges(size, task)) and len(full) >= 1096 // 128
