"""`olvm-backup gc` killed with SIGKILL while it repacks, right after it marks, and while it deletes, then run
again: every restore point left verifies, and nothing is left that no restore point needs. Against moto, on an
encrypted repository made directly in the store (packs a day old, so past the grace period)."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from olvm_backup.config import RepositorySettings, Settings, to_environ
from olvm_backup.crypto.sealing import Sealer
from olvm_backup.kafka import ensure_topics
from olvm_backup.format.chunks import ChunkCodec
from olvm_backup.format.diskmap import DiskMap, Segment
from olvm_backup.format.manifest import DiskRecord, Manifest
from olvm_backup.objectstore import open_store
from olvm_backup.repository import catalog, gc, keyring, packs
from olvm_backup.repository.chunkindex import ChunkIndex
from olvm_backup.repository.sealedstore import sealed
from olvm_backup.repository.verify import verify
from olvm_backup.secret import Secret

CHUNK = 4096
VMS, POINTS, BLOCKS = 6, 8, 6  # each restore point: six chunks, four of them new


def block(*n: int) -> bytes:
    return b"".join(x.to_bytes(4, "big") for x in n) * (CHUNK // (4 * len(n)))


async def make_repository(settings: Settings) -> None:
    """VMS VMs of POINTS restore points each, every point with its own pack; the older half forgotten: whole packs
    to delete, and packs with one live chunk in six to repack."""
    async with open_store(settings.s3) as raw:
        sealer: Sealer = await keyring.init_repository(raw, settings.repository, n=2 ** 12)
        store = sealed(raw, sealer)
        codec = ChunkCodec.for_writing(sealer)
        index = ChunkIndex()
        for v in range(VMS):
            for p in range(POINTS):
                blocks = [block(v, 0), block(v, 1)] + [block(v, p, b) for b in range(BLOCKS - 2)]
                builder = packs.PackBuilder(store, part_size=5 << 20)
                segments = []
                for i, data in enumerate(blocks):
                    name = codec.name(data)
                    segments.append(Segment(i * CHUNK, CHUNK, name))
                    if name not in index:
                        kind, stored = codec.store(data, name)
                        await builder.add(name, kind, len(data), stored)
                index.add_pack(*await builder.seal())
                disk = DiskRecord("d1", "root", BLOCKS * CHUNK, "cow", "virtio", True, True, True, "sd", "full", "",
                                  DiskMap(BLOCKS * CHUNK, segments))
                vm, backup_id = f"vm{v}", f"vm{v}-b{p}"
                ovf = await catalog.write_ovf(store, vm, backup_id, "<ovf/>")
                await catalog.commit(store, Manifest(
                    backup_id, vm, vm, "full", 1.0, 2.0 + p, None, None, None, ovf, "r", "test", [disk],
                    {d: index.get(d) for d in disk.map.digests()}, chunk_hash=codec.chunk_hash))
        for v in range(VMS):
            for p in range(POINTS // 2):
                await catalog.forget(store, await catalog.find(store, f"vm{v}-b{p}"))


async def check(settings: Settings) -> tuple[list[str], set[str]]:
    """The restore points that verify, and the packs home to no named chunk."""
    async with open_store(settings.s3) as raw:
        sealer = await keyring.open_repository(raw, settings.repository)
        store = sealed(raw, sealer)
        ok = [m.backup_id for m in await catalog.list_manifests(store) if (await verify(store, m, sealer)).ok]
        existing = {i.key async for i in raw.list("packs/")}
        found = gc.homes(await gc.census(store), existing)
        assert await gc.orphan_indexes(raw) == []
        return sorted(ok), existing - set(found.live)


def gc_command(env: dict, kill_after: str | None, delay: float = 0.0) -> int:
    """Run `olvm-backup gc`; with `kill_after`, SIGKILL it `delay` s after its log says that."""
    process = subprocess.Popen([sys.executable, "-m", "olvm_backup.cli.main", "gc", "--grace", "1h",
                                "--repack-below", "0.5", "--wait", "1m"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        if kill_after is None:
            out, err = process.communicate(timeout=300)
            assert process.returncode == 0, f"{out}\n{err}"
            return process.returncode
        deadline = time.monotonic() + 120
        seen = []
        for line in process.stderr:
            seen.append(line)
            if kill_after in line:
                time.sleep(delay)
                process.send_signal(signal.SIGKILL)
                break
            assert time.monotonic() < deadline, "gc never got there"
        process.wait(timeout=60)
        assert process.returncode == -signal.SIGKILL, "".join(seen) + process.stdout.read()
        return process.returncode
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("kill_after, delay", [
    ("repacking", 0.05),   # while it copies live chunks into new packs
    ("condemned", 0.0),    # right after the condemned list is written
    ("deleting up to", 0.2),  # while it deletes
])
def test_gc_killed_then_run_again_loses_nothing(kafka_settings, s3_settings, tmp_path, kill_after, delay):
    settings = Settings(data_dir=tmp_path, s3=s3_settings, kafka=kafka_settings,
                        repository=RepositorySettings(password=Secret("a passphrase for these tests")))
    real_time = time.time
    packs.time.time = lambda: real_time() - 2 * 86400  # packs made "two days ago": past the hour of grace
    try:
        asyncio.run(make_repository(settings))
    finally:
        packs.time.time = real_time
    asyncio.run(ensure_topics(settings.kafka))  # as `up` makes them: gc tells the audit trail what it deleted
    kept = sorted(f"vm{v}-b{p}" for v in range(VMS) for p in range(POINTS // 2, POINTS))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OLVM_")}, **to_environ(settings),
           "OLVM_LOG_LEVEL": "INFO"}

    assert gc_command(env, kill_after, delay) == -signal.SIGKILL
    verified, _ = asyncio.run(check(settings))
    assert verified == kept, f"after a kill ({kill_after}): restore points that no longer verify"
    gc_command(env, None)
    verified, unneeded = asyncio.run(check(settings))
    assert verified == kept
    # The copies a killed repack left are young (made just now): only they may remain, until they age.
    young = {p for p in unneeded if time.time() - (gc.pack_created(p) or 0) < 3600}
    assert unneeded == young, f"packs nothing needs were left: {sorted(unneeded - young)}"
