"""Garbage collection on an encrypted repository in the in-memory store: it deletes exactly the packs that only
forgotten restore points named; a backup that deduplicated against a condemned pack never commits naming it; and
a collection stopped at any request whatsoever, then run again, leaves every remaining restore point whole and
no pack behind that nothing names."""
from __future__ import annotations

import os
from typing import Awaitable

import pytest

from olvm_backup.crypto.sealing import RepoKey, Sealer
from olvm_backup.errors import StoreError
from olvm_backup.format.chunks import ChunkCodec
from olvm_backup.format.diskmap import DiskMap, Segment
from olvm_backup.format.manifest import DiskRecord, Location, Manifest
from olvm_backup.objectstore.memory import MemoryStore
from olvm_backup.repository import catalog, gc
from olvm_backup.repository.chunkindex import ChunkIndex
from olvm_backup.repository.packs import PackBuilder
from olvm_backup.repository.sealedstore import sealed
from olvm_backup.repository.verify import verify

CHUNK = 4096
DAY = 86400.0
LATER = 10 * DAY  # collections run "ten days on": every pack is past any grace


class Repo:
    """Restore points made chunk by chunk: each point's new chunks in a pack of their own, known ones reused."""

    def __init__(self) -> None:
        self.raw = MemoryStore()
        self.sealer = Sealer(RepoKey.generate())
        self.store = sealed(self.raw, self.sealer)
        self.codec = ChunkCodec.for_writing(self.sealer)
        self.where: dict[str, Location] = {}
        self.blocks: dict[str, bytes] = {}

    async def point(self, vm: str, backup_id: str, blocks: list[bytes], index: ChunkIndex | None = None) -> Manifest:
        known = index if index is not None else self.where
        packs = PackBuilder(self.store, part_size=5 << 20)
        segments, chunks = [], {}
        for i, block in enumerate(blocks):
            name = self.codec.name(block)
            segments.append(Segment(i * CHUNK, len(block), name))
            loc = known.get(name)
            if loc is None:
                kind, stored = self.codec.store(block, name)
                await packs.add(name, kind, len(block), stored)
            else:
                chunks[name] = loc
        if not packs.empty:
            pack_key, entries = await packs.seal()
            for name, offset, length, raw, kind in entries:
                chunks[name] = self.where[name] = Location(pack_key, offset, length, raw, kind)
        disk = DiskRecord("d1", "root", len(blocks) * CHUNK, "cow", "virtio", True, True, True, "sd", "full", "",
                          DiskMap(len(blocks) * CHUNK, segments))
        ovf = await catalog.write_ovf(self.store, vm, backup_id, "<ovf/>")
        m = Manifest(backup_id, vm, vm, "full", 1.0, 2.0, None, None, None, ovf, "r", "test", [disk], chunks,
                     chunk_hash=self.codec.chunk_hash)
        await catalog.commit(self.store, m)
        return m

    async def packs(self) -> dict[str, int]:
        return {i.key: i.size async for i in self.raw.list("packs/")}

    async def all_verify(self) -> list[str]:
        return [m.backup_id for m in await catalog.list_manifests(self.store)
                if (await verify(self.store, m, self.sealer)).ok]


def block(n: int) -> bytes:
    return n.to_bytes(4, "big") * (CHUNK // 4)


async def five_points(repo: Repo) -> list[Manifest]:
    """Five restore points of one VM, each sharing most blocks with the one before (as incrementals do)."""
    out = []
    for i in range(5):
        out.append(await repo.point("vm1", f"b{i}", [block(0), block(1), block(10 + i), block(20 + i // 2)]))
    return out


async def test_gc_frees_exactly_the_packs_only_forgotten_restore_points_named():
    repo = Repo()
    points = await five_points(repo)
    await repo.point("vm2", "other", [block(1), block(99)])  # another VM sharing a block
    for m in points[:2]:
        await catalog.forget(repo.store, m)
    live = {loc.pack_key for m in await catalog.list_manifests(repo.store) for loc in m.chunks.values()}
    gone = {loc.pack_key for m in points[:2] for loc in m.chunks.values()} - live  # computed independently
    before = await repo.packs()

    now = max(map(gc.pack_created, before)) + LATER
    [report] = await gc.collect(repo.store, grace=DAY, wait=0, now=now)

    assert set(report.deleted) == gone and gone
    after = await repo.packs()
    assert sum(before.values()) - sum(after.values()) == sum(before[k] for k in gone) == report.freed
    assert sorted(await repo.all_verify()) == ["b2", "b3", "b4", "other"]
    assert await gc.orphan_indexes(repo.raw) == []
    # Nothing else is garbage now: a second collection deletes nothing.
    [again] = await gc.collect(repo.store, grace=DAY, wait=0, now=now)
    assert again.deleted == []


async def test_young_packs_and_a_dry_run_delete_nothing():
    repo = Repo()
    points = await five_points(repo)
    await catalog.forget(repo.store, points[1])  # the only one naming its own pack
    before = await repo.packs()
    [young] = await gc.collect(repo.store, grace=DAY, wait=0)  # every pack made just now: within the grace
    assert young.deleted == [] and await repo.packs() == before
    [dry] = await gc.collect(repo.store, grace=0, wait=0, dry_run=True, now=max(map(gc.pack_created, before)) + 1)
    assert dry.deleted and await repo.packs() == before
    assert [i.key async for i in repo.raw.list(gc.CONDEMNED_PREFIX)] == []


async def test_a_backup_that_deduplicated_against_a_condemned_pack_cannot_commit_naming_it():
    repo = Repo()
    points = await five_points(repo)
    await catalog.forget(repo.store, points[1])  # the only one naming its own pack, which holds block 11
    lonely = points[1].chunks[repo.codec.name(block(11))]
    # The journal of a backup running when the list becomes visible: the sweep waits for it.
    await repo.raw.put("jobs/running.json", b"{}")
    condemned = await gc.mark(repo.store, grace=DAY, now=max(map(gc.pack_created, await repo.packs())) + LATER)
    assert set(condemned.packs) == {lonely.pack_key}
    with pytest.raises(gc.GcWaiting, match="1 backup"):
        await gc.sweep(repo.store, condemned, wait=0, report=gc.GcReport(condemned.gc_id))
    assert set(condemned.packs) <= set(await repo.packs()), "nothing may be deleted while a backup may name it"
    # That backup found block 11 in an index it loaded before: the commit check (the snapshotter's) sees the
    # pack condemned and refuses, naming it.
    assert lonely.pack_key in await gc.condemned_packs(repo.store)
    # A backup that starts now drops the condemned packs first, and stores block 11 anew.
    fresh = ChunkIndex()
    for d, loc in repo.where.items():
        fresh.add_pack(loc.pack_key, [(d, loc.offset, loc.length, loc.raw_size, loc.codec)])
    assert fresh.exclude(await gc.condemned_packs(repo.store)) == (1, 0)
    m = await repo.point("vm1", "b5", [block(11), block(0)], index=fresh)
    assert m.chunks[repo.codec.name(block(11))].pack_key != lonely.pack_key
    await repo.raw.delete("jobs/running.json")
    report = gc.GcReport(condemned.gc_id)
    await gc.sweep(repo.store, condemned, wait=0, report=report)
    assert report.deleted == [lonely.pack_key]
    assert sorted(await repo.all_verify()) == ["b0", "b2", "b3", "b4", "b5"]


class Killed(Exception):
    """A collection stopped dead at one request (what SIGKILL does to it, seen from the store)."""


async def stopped_at(repo: Repo, stop_at: int | None, collection: Awaitable) -> int:
    """Await a collection with the store failing it at its request number `stop_at` (never when None), as if its
    process were killed there; return how many requests it made."""
    count = 0

    async def before(op: str, key: str, part) -> None:
        nonlocal count
        count += 1
        if stop_at is not None and count == stop_at:
            raise Killed(f"{op} {key}")

    repo.raw.before = before
    try:
        await collection
    except (Killed, StoreError):
        pass
    repo.raw.before = None
    return count


async def test_a_collection_stopped_at_any_request_then_run_again_loses_nothing_and_leaves_no_orphan():
    async def scenario(stop_at: int | None) -> int:
        repo = Repo()
        points = await five_points(repo)
        await repo.point("vm2", "other", [block(1), block(99), os.urandom(CHUNK)])
        for m in points[:3]:
            await catalog.forget(repo.store, m)
        now = max(map(gc.pack_created, await repo.packs())) + LATER
        count = await stopped_at(repo, stop_at, gc.collect(repo.store, grace=DAY, wait=0, now=now))
        await gc.collect(repo.store, grace=DAY, wait=0, now=now)  # run again, to the end
        assert sorted(await repo.all_verify()) == ["b3", "b4", "other"], f"stopped at request {stop_at}"
        live = {loc.pack_key for m in await catalog.list_manifests(repo.store) for loc in m.chunks.values()}
        assert set(await repo.packs()) == live, f"stopped at request {stop_at}: a pack nothing names is left"
        assert await gc.orphan_indexes(repo.raw) == []
        return count

    total = await scenario(None)
    assert total > 10
    for stop_at in range(1, total + 1):
        await scenario(stop_at)


async def mostly_dead(repo: Repo) -> tuple[list[Manifest], str]:
    """One restore point's pack of eight chunks of which, once it is forgotten, one is still named."""
    first = await repo.point("vm1", "old", [block(n) for n in range(100, 108)])
    keeper = await repo.point("vm1", "new", [block(100), os.urandom(CHUNK)])
    await catalog.forget(repo.store, first)
    return [first, keeper], first.chunks[repo.codec.name(block(100))].pack_key


async def test_a_mostly_dead_pack_is_repacked_and_its_live_chunk_still_restores():
    repo = Repo()
    (_, keeper), sparse = await mostly_dead(repo)
    now = max(map(gc.pack_created, await repo.packs())) + LATER
    [report] = await gc.collect(repo.store, grace=DAY, wait=0, now=now, repack_below=0.5)
    assert sparse in report.deleted and sparse not in await repo.packs()
    # The keeper's manifest still names the deleted pack: the chunk is read where the repack put it.
    assert keeper.chunks[repo.codec.name(block(100))].pack_key == sparse
    assert await repo.all_verify() == ["new"]
    moved = await gc.census(repo.store)
    assert [p for p in moved.where[bytes.fromhex(repo.codec.name(block(100)))]] != [sparse]
    # Without repacking the pack would have stayed, whole: one live chunk in eight.
    repo2 = Repo()
    _, sparse2 = await mostly_dead(repo2)
    now2 = max(map(gc.pack_created, await repo2.packs())) + LATER
    [plain] = await gc.collect(repo2.store, grace=DAY, wait=0, now=now2)
    assert sparse2 not in plain.deleted and sparse2 in await repo2.packs()


async def test_a_repack_stopped_at_any_request_then_run_again_loses_nothing():
    async def scenario(stop_at: int | None) -> int:
        repo = Repo()
        await mostly_dead(repo)
        await repo.point("vm2", "other", [block(101), block(7)])
        now = max(map(gc.pack_created, await repo.packs())) + LATER
        count = await stopped_at(repo, stop_at, gc.collect(repo.store, grace=DAY, wait=0, now=now, repack_below=0.5))
        # Run again, later (copies a killed repack left are young at first: past the grace, they go too).
        await gc.collect(repo.store, grace=DAY, wait=0, now=now + LATER, repack_below=0.5)
        await gc.collect(repo.store, grace=DAY, wait=0, now=now + 2 * LATER, repack_below=0.5)
        assert sorted(await repo.all_verify()) == ["new", "other"], f"stopped at request {stop_at}"
        assert await gc.orphan_indexes(repo.raw) == []
        named = await gc.census(repo.store)
        found = gc.homes(named, set(await repo.packs()))
        assert set(await repo.packs()) == set(found.live), f"stopped at {stop_at}: a pack home to nothing is left"
        return count

    total = await scenario(None)
    for stop_at in range(1, total + 1):
        await scenario(stop_at)


async def test_a_pack_a_collection_spared_comes_back_into_a_services_index():
    """A service that put a condemned pack's chunks out must let them back in once the sweep spares the pack (a
    backup committed naming it): else it looks for them in vain forever, while readers still deduplicate."""
    repo = Repo()
    points = await five_points(repo)
    await catalog.forget(repo.store, points[1])
    lonely = points[1].chunks[repo.codec.name(block(11))].pack_key
    index = await ChunkIndex().load(repo.store)
    await repo.raw.put("jobs/running.json", b"{}")
    condemned = await gc.mark(repo.store, grace=DAY, now=max(map(gc.pack_created, await repo.packs())) + LATER)
    assert index.exclude(await gc.condemned_packs(repo.store)) == (1, 0)
    assert repo.codec.name(block(11)) not in index
    # The backup running at the mark commits, naming the pack; the sweep spares it.
    await repo.point("vm1", "late", [block(11)], index=await ChunkIndex().load(repo.store))
    await repo.raw.delete("jobs/running.json")
    report = gc.GcReport(condemned.gc_id)
    await gc.sweep(repo.store, condemned, wait=0, report=report)
    assert report.spared == [lonely] and lonely in await repo.packs()
    assert index.exclude(await gc.condemned_packs(repo.store)) == (0, 1)
    await index.refresh(repo.store)
    assert index.get(repo.codec.name(block(11))).pack_key == lonely


def test_a_chunk_stored_again_outlives_the_condemned_pack_of_its_first_copy():
    """The reader stores a chunk anew once the pack of its first copy is condemned; the snapshotter, which still
    named the first copy, must then find the new one (it learned it from the pack record) or it waits forever."""
    index = ChunkIndex()
    index.add_pack("packs/aa/old", [("d1", 0, 10, 4096, "zstd+gcm"), ("d2", 10, 10, 4096, "zstd+gcm")])
    index.add_pack("packs/bb/new", [("d1", 0, 12, 4096, "zstd+gcm")])  # d1 stored again
    assert index.get("d1").pack_key == "packs/aa/old"
    assert index.exclude({"packs/aa/old"}) == (1, 0)  # d2 is gone; d1 lives on in the new pack
    assert index.get("d1").pack_key == "packs/bb/new" and "d2" not in index
