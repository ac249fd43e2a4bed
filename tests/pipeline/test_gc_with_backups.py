"""Garbage collection while backups run: a VM's backup deduplicates against packs that only a forgotten restore
point of another VM named, while a collection condemns and deletes exactly those packs, started at a different
moment each round. Every round the backup either commits a restore point whose every chunk reads back equal to
the guest's disk, or fails saying a pack is being collected, and succeeds when run again; never a restore point
naming a deleted pack."""
from __future__ import annotations

import asyncio
import hashlib
import time
import uuid

import pytest

from olvm_backup.format.chunks import ChunkCodec
from olvm_backup.kafka import Bus
from olvm_backup.kafka.follow import Follower
from olvm_backup.repository import catalog, gc
from olvm_backup.repository.chunkfetch import ChunkFetcher
from olvm_backup.repository.sealedstore import open_sealed
from schemas import BackupEvent, BackupRequest
from schemas.topics import BACKUP_EVENTS, BACKUP_REQUESTS

from .conftest import module_sim

MIB = 1024 * 1024
ROUNDS = 20
REGION = 2 * MIB  # what the guests write each round: the same bytes on both VMs, so the second deduplicates

INVENTORY = """
clusters: [{name: Default}]
storage_domains: [{name: data1}]
vms:
  - name: source
    status: up
    disks: [{name: source_disk, size: 8MiB}]
  - name: twin
    status: up
    disks: [{name: twin_disk, size: 8MiB}]
"""


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    yield from module_sim(tmp_path_factory, INVENTORY)


class Run:
    """Backups asked for on the bus and followed to their final event; the repository opened with its key."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.finals: dict[str, asyncio.Future] = {}

    def _seen(self, event: BackupEvent) -> None:
        waiting = self.finals.get(event.request_id)
        if waiting is not None and not waiting.done() and event.kind in ("completed", "failed", "cancelled"):
            waiting.set_result(event)

    async def backup(self, bus: Bus, vm: str) -> BackupEvent:
        request = BackupRequest(request_id=str(uuid.uuid4()), vm=vm, mode="full", requested_by="test",
                                requested_at=time.time())
        self.finals[request.request_id] = asyncio.get_running_loop().create_future()
        await bus.publish(BACKUP_REQUESTS, request, key=vm)
        return await asyncio.wait_for(self.finals[request.request_id], timeout=180)


async def disk_bytes(store, sealer, manifest) -> bytes:
    disk = manifest.disks[0]
    fetcher = ChunkFetcher(store, ChunkCodec.for_reading(manifest.chunk_hash, sealer))
    wanted = {d: manifest.chunks[d] for d in disk.map.digests()}
    chunks = await fetcher.fetch(wanted)
    out = bytearray(disk.size)
    for seg in disk.map:
        chunk = chunks[seg.digest]
        assert not isinstance(chunk, Exception), f"{manifest.backup_id}: {chunk}"
        out[seg.offset:seg.offset + seg.length] = chunk[seg.skip:seg.skip + seg.length]
    return bytes(out)


def test_gc_and_a_deduplicating_backup_interleaved(pipeline, admin, engine_view):
    run = Run(pipeline.settings)
    outcomes: list[str] = []

    async def rounds() -> None:
        async with Bus(pipeline.settings.kafka, client_id="test-gc") as bus, \
                Follower(pipeline.settings.kafka, BACKUP_EVENTS, run._seen, client_id="test-gc/events"), \
                open_sealed(pipeline.settings) as (store, sealer):
            for i in range(ROUNDS):
                offset = (i % 3) * REGION
                for vm in ("source", "twin"):
                    await asyncio.to_thread(admin.write, vm, f"{vm}_disk", offset, REGION, seed=5000 + i)
                first = await run.backup(bus, "source")
                assert first.kind == "completed", first.message
                # Only the forgotten restore point named the source's new packs: garbage, which the twin's
                # backup is about to deduplicate against.
                await catalog.forget(store, await catalog.find(store, first.backup_id))

                async def collect(delay: float) -> None:
                    await asyncio.sleep(delay)
                    await gc.collect(store, grace=0, wait=120)

                twin, _ = await asyncio.gather(run.backup(bus, "twin"), collect((i % 5) * 0.4))
                if twin.kind != "completed":
                    assert "garbage-collected" in twin.message, twin.message
                    outcomes.append("failed clearly, then")
                    twin = await run.backup(bus, "twin")
                    assert twin.kind == "completed", twin.message
                outcomes.append("committed")
                manifest = await catalog.find(store, twin.backup_id)
                expected = await asyncio.to_thread(admin.checksum, "twin", "twin_disk")
                got = hashlib.sha256(await disk_bytes(store, sealer, manifest)).hexdigest()
                assert got == expected, f"round {i}: the twin's restore point does not read back as its disk"
            # In the end every restore point left reads back whole, and the collections freed space.
            for m in await catalog.list_manifests(store):
                await disk_bytes(store, sealer, m)
            await gc.collect(store, grace=0, wait=120)
            assert await gc.orphan_indexes(store) == []

    asyncio.run(rounds())
    print(f"{ROUNDS} rounds: {outcomes.count('committed')} committed, "
          f"{outcomes.count('failed clearly, then')} failed clearly first")
    assert outcomes.count("committed") == ROUNDS
    assert engine_view.leftovers() == []
