"""The consumer loop every service runs, fed in-process (tests/twins.py): handled records are committed, a record
that does not decode or fails for good is dead-lettered and committed, a revoked partition's offsets are not."""
from __future__ import annotations

from olvm_backup.errors import BackupError
from schemas import DeadLetter, PackStored
from schemas.topics import DEAD_LETTERS, PACKS
from tests.twins import PREFIX, ListLoop, MemoryBus, run_until_drained

TOPIC = PACKS.full_name(PREFIX)


def pack(n: int) -> PackStored:
    return PackStored(pack_key=f"packs/p{n}", entries=[], writer="w", at=0.0)


async def test_records_are_handled_in_order_and_bad_ones_dead_lettered_and_committed():
    bus = MemoryBus()
    loop = ListLoop(bus, [PACKS])
    loop.feed(TOPIC, pack(1))
    loop.feed(TOPIC, b"\x00 not msgpack")
    loop.feed(TOPIC, pack(3))
    tp = loop.feed(TOPIC, pack(4))
    seen = []

    async def handler(record, where):
        if record.pack_key == "packs/p3":
            raise BackupError("pack p3 is unreadable")
        seen.append((record.pack_key, where.offset))

    await run_until_drained(loop, handler)

    assert seen == [("packs/p1", 0), ("packs/p4", 3)]
    letters = bus.records(DEAD_LETTERS)
    assert [(d.offset, d.error_type) for d in letters] == [(1, "DecodeError"), (2, "BackupError")]
    assert isinstance(letters[1], DeadLetter) and letters[1].reason == "pack p3 is unreadable"
    assert [c[tp] for c in loop.commits] == [1, 2, 3, 4]  # each record once its side effect is done


async def test_offsets_of_a_revoked_partition_are_dropped():
    bus = MemoryBus()
    loop = ListLoop(bus, [PACKS])
    kept, revoked = loop.feed(TOPIC, pack(1), partition=0), loop.feed(TOPIC, pack(2), partition=1)
    loop.revoked.add(revoked)

    async def handler(record, where):
        pass

    await run_until_drained(loop, handler, commit_each=False,
                            after_batch=lambda empty: loop.commit_processed())
    assert loop.committed == {kept: 1}
