"""Disk maps: overlays behave like writing bytes onto a disk."""
from __future__ import annotations

import random

import pytest

from olvm_backup.format.diskmap import DiskMap, Segment


def materialize(m: DiskMap, chunks: dict[str, bytes]) -> bytes:
    out = bytearray(m.size)
    for seg in m:
        out[seg.offset:seg.end] = chunks[seg.digest][seg.skip:seg.skip + seg.length]
    return bytes(out)


def test_overlay_equals_writing_the_changes_onto_the_image():
    rng = random.Random(7)
    size = 4096
    chunks: dict[str, bytes] = {}
    image = bytearray(size)
    m = DiskMap(size)
    for generation in range(30):
        changes, zeros, used = [], [], []
        for _ in range(rng.randint(1, 5)):
            start = rng.randrange(0, size - 1)
            length = rng.randint(1, min(512, size - start))
            if any(start < e and s < start + length for s, e in used):
                continue
            used.append((start, start + length))
            if rng.random() < 0.3:
                zeros.append((start, length))
                image[start:start + length] = bytes(length)
            else:
                data = rng.randbytes(length)
                digest = f"g{generation}-{start}"
                chunks[digest] = b"pad" + data
                changes.append(Segment(start, length, digest, skip=3))
                image[start:start + length] = data
        m = m.overlay(changes, zeros)
        assert materialize(m, chunks) == bytes(image)


def test_overlay_can_grow_and_shrink_the_disk():
    m = DiskMap(100, [Segment(0, 100, "a")])
    grown = m.overlay([Segment(150, 10, "b")], size=200)
    assert grown.segments == [Segment(0, 100, "a"), Segment(150, 10, "b")]
    assert m.overlay([], size=60).segments == [Segment(0, 60, "a")]


def test_overlapping_segments_are_refused():
    with pytest.raises(ValueError):
        DiskMap(100, [Segment(0, 50, "a"), Segment(49, 10, "b")])
    with pytest.raises(ValueError):
        DiskMap(100, [Segment(95, 10, "a")])


def test_read_plan_covers_the_range_with_zeros_between():
    m = DiskMap(100, [Segment(10, 10, "a"), Segment(50, 20, "b", skip=5)])
    plan = m.read_plan(15, 60)
    assert [(o, n, s.digest if s else None) for o, n, s in plan] == [
        (15, 5, "a"), (20, 30, None), (50, 10, "b")]
    assert plan[2][2].skip == 5


def test_wire_round_trip():
    m = DiskMap(1 << 30, [Segment(0, 4096, "a" * 64), Segment(1 << 20, 512, "b" * 64, skip=17)])
    assert DiskMap.from_wire(m.to_wire()) == m
