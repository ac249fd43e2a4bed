"""Task and chunk planning: aligned, complete, zero-skipping."""
from __future__ import annotations

from olvm_backup.format.planning import Extent, chunk_ranges, clip_extents, connection_share, task_ranges, zero_ranges

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
