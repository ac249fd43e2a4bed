"""Retention end to end: five backups of a VM, `prune --keep-last 3` keeps the three newest (each verifies and
restores byte for byte), then `gc` deletes exactly the packs only the two removed restore points used, computed
here on our own, and the bucket shrinks by their size."""
from __future__ import annotations

import asyncio

from olvm_backup.objectstore import open_store
from olvm_backup.repository import catalog
from olvm_backup.repository.sealedstore import open_sealed

from .test_cbt_backup import backup, exported_hash, restore_points

MIB = 1024 * 1024
ONLY_DATA = ("--exclude", "app1_os", "--exclude", "app1_scratch")


def packs_named(settings) -> dict[str, set[str]]:
    async def read() -> dict[str, set[str]]:
        async with open_sealed(settings) as (store, _):
            return {m.backup_id: {loc.pack_key for loc in m.chunks.values()}
                    for m in await catalog.list_manifests(store)}
    return asyncio.run(read())


def pack_sizes(settings) -> dict[str, int]:
    async def read() -> dict[str, int]:
        async with open_store(settings.s3) as store:
            return {i.key: i.size async for i in store.list("packs/")}
    return asyncio.run(read())


def test_keep_last_three_of_five_then_gc_frees_exactly_what_only_the_removed_used(pipeline, admin, engine_view,
                                                                                tmp_path):
    contents = []
    for i in range(5):
        if i:  # the same range rewritten each time: what an older restore point alone held is replaced
            admin.write("app1", "app1_data", MIB, 512 * 1024, seed=900 + i)
        backup(pipeline, "app1", *ONLY_DATA)
        contents.append(admin.checksum("app1", "app1_data"))
    points = restore_points(pipeline, "app1")
    assert len(points) == 5
    named = packs_named(pipeline.settings)

    dry = pipeline.cli("prune", "--vm", "app1", "--keep-last", "3", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert len(restore_points(pipeline, "app1")) == 5
    r = pipeline.cli("prune", "--vm", "app1", "--keep-last", "3")
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    left = restore_points(pipeline, "app1")
    assert [p["backup_id"] for p in left] == [p["backup_id"] for p in points[2:]]  # the newest is among them
    for point, expected in zip(left, contents[2:], strict=True):
        assert pipeline.cli("verify", point["backup_id"]).returncode == 0
        assert exported_hash(pipeline, tmp_path, point["backup_id"], "app1_data") == expected

    removed = [p["backup_id"] for p in points[:2]]
    only_removed = set().union(*(named[b] for b in removed)) - set().union(
        *(packs for b, packs in named.items() if b not in removed))
    assert only_removed, "the removed restore points held packs of their own"
    before = pack_sizes(pipeline.settings)
    r = pipeline.cli("gc", "--grace", "0m", "--repack-below", "0")  # the packs were made just now
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    deleted = {line.split()[1] for line in r.stdout.splitlines() if line.startswith("deleted packs/")}
    assert deleted == only_removed, r.stdout
    after = pack_sizes(pipeline.settings)
    assert sum(before.values()) - sum(after.values()) == sum(before[p] for p in only_removed)
    for point, expected in zip(left, contents[2:], strict=True):
        assert pipeline.cli("verify", point["backup_id"]).returncode == 0
        assert exported_hash(pipeline, tmp_path, point["backup_id"], "app1_data") == expected
    assert engine_view.leftovers() == []
