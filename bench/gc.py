"""Garbage collection benchmark (not a test): the time and peak memory of a GC over a catalog of 1,000 restore points
and 200,000 chunks, generated directly in the object store.

    .venv/bin/python bench/gc.py [--store embedded|moto|memory] [--restore-points N] [--chunks N] [--vms N]
                                 [--no-repack] [--work DIR]

What it generates, straight into the store and through the product's own write paths (an encrypted repository:
manifests, OVFs and pack indexes sealed by `sealed(store, Sealer(RepoKey.generate()))`, manifests written by
`catalog.commit`, indexes by `encode_index`): --vms VMs (default 50) with --restore-points / --vms restore points
each (default 20), the first a full backup and the others incrementals. Each incremental rewrites 5 % of the
disk's chunks: 85 % of them a "hot" region at the start of the disk that every incremental rewrites (a
database, logs), the rest at random. Each backup's new chunks go into packs of 64 chunks, in disk order, as a
writer stores them. The disk size is chosen so the distinct chunks reach --chunks (default 200,000). Chunks hold no
real data: each stored chunk is 40 random bytes (a sealed 1 MiB chunk as far as manifests and indexes say); a GC
reads manifests and pack indexes, never chunk data, except to repack. Then the oldest 30 % of each VM's restore
points are forgotten (`catalog.forget`), so the full backup and the first incrementals go, and the packs holding
only the hot region's old versions become garbage.

What it measures, with --store embedded (the default: `rclone serve s3` over a scratch directory, as `olvm-backup
up` starts it) or moto (moto's S3 server, as the tests use it):
- generation time (bounded parallel PUTs), not part of any target;
- the baseline: listing `backups/` and `index/` and GETting (and opening) every manifest and index object one after
  another, as a census does: the I/O floor of one census;
- `gc.collect` without repacking, then `gc.collect(repack_below=0.5)` over what the first left (unless
  --no-repack), each in a fresh child process (`bench/gc.py --collect-only`), with `now` ten days on so every pack
  is past the grace. For each: wall time, the child's peak RSS (ru_maxrss: the whole process, interpreter, S3
  client and all, as a service would show it), its RSS just before the GC began (so the GC's own share is the
  difference), packs condemned and deleted, bytes freed, and the requests it made.
With --store memory (the in-process MemoryStore: the algorithm alone, no network) the GC runs in this process, so
its RSS includes the store's contents; the memory figure is instead tracemalloc's peak of a dry run of the same
collection (Python allocations only, the store's objects not counted), and the time is of the real run, untraced.

Target (issue 20): peak memory under 300 MiB. The machine this runs on may be shared: times vary from run to run;
the ratios against the baseline are the figure to compare.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

from olvm_backup.config import S3Settings
from olvm_backup.crypto.sealing import CHUNK_HASH, RepoKey, Sealer
from olvm_backup.format.diskmap import DiskMap, Segment
from olvm_backup.format.manifest import DiskRecord, Location, Manifest
from olvm_backup.objectstore import open_store
from olvm_backup.objectstore.memory import MemoryStore
from olvm_backup.repository import catalog, gc
from olvm_backup.repository.chunkindex import INDEX_PREFIX, encode_index, index_key
from olvm_backup.repository.packs import new_pack_key
from olvm_backup.repository.sealedstore import sealed
from olvm_backup.secret import Secret
from olvm_backup.stack import components
from olvm_backup.stack.processes import free_port

MIB = 1024 * 1024
CHUNK = MIB              # what manifests say each chunk holds
STORED = 40              # bytes each chunk takes in its pack here
PER_PACK = 64            # chunks per pack (64 MiB packs of 1 MiB chunks)
CHANGE = 0.05            # share of the disk's chunks each incremental rewrites
HOT = 0.85               # share of those in the region every incremental rewrites
FORGET = 0.30            # share of each VM's oldest restore points forgotten
DAY = 86400.0
TARGET = 300 * MIB
PARALLEL = 32            # requests in flight while generating


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


class Counting:
    """The store underneath the sealing, counting requests (and bytes read) by kind."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.counts: dict[str, int] = {}
        self.bytes_read = 0

    def _count(self, op: str) -> None:
        self.counts[op] = self.counts.get(op, 0) + 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        self._count("get")
        data = await self.inner.get(key, offset, length)
        self.bytes_read += len(data)
        return data

    async def put(self, key: str, data: bytes, **kwargs: Any) -> None:
        self._count("put")
        await self.inner.put(key, data, **kwargs)

    async def head(self, key: str):
        self._count("head")
        return await self.inner.head(key)

    async def delete(self, key: str) -> None:
        self._count("delete")
        await self.inner.delete(key)

    async def multipart(self, key: str, *args: Any, **kwargs: Any):
        self._count("multipart")
        return await self.inner.multipart(key, *args, **kwargs)

    async def list(self, prefix: str = ""):
        self._count("list")
        async for info in self.inner.list(prefix):
            yield info

    def summary(self) -> str:
        return ", ".join(f"{op} {n:,}" for op, n in sorted(self.counts.items())) + f"; {human(self.bytes_read)} read"


# -- generation -------------------------------------------------------------------------------------------------------

def shape(chunks: int, vms: int, points: int) -> tuple[int, int]:
    """(chunks per disk, chunks each incremental rewrites) so that the distinct chunks reach `chunks`."""
    per_vm = math.ceil(chunks / vms)
    disk = math.ceil(per_vm / (1 + (points - 1) * CHANGE))
    changed = max(1, round(disk * CHANGE))
    while vms * (disk + (points - 1) * changed) < chunks:
        disk += 1
        changed = max(1, round(disk * CHANGE))
    return disk, changed


class Generator:
    def __init__(self, store: Any, vms: int, points: int, chunks: int, seed: int = 20) -> None:
        self.store = store
        self.vms, self.points = vms, points
        self.disk, self.changed = shape(chunks, vms, points)
        self.rng = random.Random(seed)
        self.gate = asyncio.Semaphore(PARALLEL)
        self.packs = 0
        self.chunks = 0
        self.manifests: dict[str, list[Manifest]] = {}
        self.seconds = 0.0
        self.forgotten = 0

    async def _put(self, key: str, data: bytes) -> None:
        async with self.gate:
            await self.store.put(key, data)

    async def _pack(self, digests: list[str]) -> dict[str, Location]:
        """One pack of tiny stored chunks, and its sealed index, as a writer leaves them."""
        pack_id, pack_key = new_pack_key()
        entries = [(d, i * STORED, STORED, CHUNK, "zstd+gcm") for i, d in enumerate(digests)]
        await self._put(pack_key, os.urandom(STORED * len(digests)))
        await self._put(index_key(pack_id), encode_index(entries, pack_key))
        self.packs += 1
        self.chunks += len(digests)
        return {d: Location(pack_key, off, length, raw, codec) for d, off, length, raw, codec in entries}

    async def _new_chunks(self, digests: list[str]) -> dict[str, Location]:
        out: dict[str, Location] = {}
        for located in await asyncio.gather(*(self._pack(digests[i:i + PER_PACK])
                                              for i in range(0, len(digests), PER_PACK))):
            out.update(located)
        return out

    async def vm(self, n: int) -> None:
        """One VM's restore points, oldest first: each committed only once its packs and OVF are in."""
        vm_id = str(uuid.UUID(int=self.rng.getrandbits(128)))
        hot = max(1, round(self.changed * HOT))
        current = [secrets.token_hex(32) for _ in range(self.disk)]
        where = await self._new_chunks(current)
        made = []
        t0 = 1.7e9 + n
        for p in range(self.points):
            if p:
                rest = self.rng.sample(range(hot, self.disk), self.changed - hot)
                positions = list(range(hot)) + sorted(rest)
                fresh = [secrets.token_hex(32) for _ in positions]
                for pos, digest in zip(positions, fresh, strict=True):
                    current[pos] = digest
                where.update(await self._new_chunks(fresh))
            backup_id = str(uuid.UUID(int=self.rng.getrandbits(128)))
            segments = [Segment(i * CHUNK, CHUNK, d) for i, d in enumerate(current)]
            disk = DiskRecord("d-" + vm_id[:8], "root", self.disk * CHUNK, "cow", "virtio_scsi", True, True, True,
                              "data1", "full" if p == 0 else "incremental", "first backup" if p == 0 else "",
                              DiskMap(self.disk * CHUNK, segments), bytes_read=self.changed * CHUNK,
                              bytes_new=self.changed * CHUNK)
            async with self.gate:
                ovf = await catalog.write_ovf(self.store, vm_id, backup_id, f"<ovf vm='{vm_id}'/>" + "x" * 4000)
            m = Manifest(backup_id, vm_id, f"vm{n:03d}", "full" if p == 0 else "incremental", t0 + p * DAY,
                         t0 + p * DAY + 600, f"cp{p}", f"cp{p - 1}" if p else None, made[-1].backup_id if p else None,
                         ovf, secrets.token_hex(8), "bench", [disk], {d: where[d] for d in current},
                         chunk_hash=CHUNK_HASH, consistency="frozen")
            async with self.gate:
                await catalog.commit(self.store, m)
            m.chunks, m.disks = {}, []  # forget needs only its keys
            made.append(m)
        self.manifests[vm_id] = made

    async def run(self) -> None:
        await asyncio.gather(*(self.vm(n) for n in range(self.vms)))

    async def forget_oldest(self) -> int:
        doomed = [m for made in self.manifests.values() for m in made[:math.floor(len(made) * FORGET)]]

        async def one(m: Manifest) -> None:
            async with self.gate:
                await catalog.forget(self.store, m)
        await asyncio.gather(*(one(m) for m in doomed))
        return len(doomed)


async def census_floor(store: Any) -> tuple[float, int]:
    """List `backups/` and `index/`, GET and open every manifest and index, one after another: a census's I/O."""
    start = time.monotonic()
    n = 0
    for entry in await catalog.entries(store):
        await store.get(entry.key)
        n += 1
    keys = [info.key async for info in store.list(INDEX_PREFIX)]
    for key in keys:
        await store.get(key)
        n += 1
    return time.monotonic() - start, n


# -- the collection, in a child process ------------------------------------------------------------------------------

def rss_now() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def summarise(reports: list[gc.GcReport]) -> dict[str, Any]:
    return {"condemned": sum(r.condemned for r in reports), "deleted": sum(len(r.deleted) for r in reports),
            "freed": sum(r.freed for r in reports), "spared": sum(len(r.spared) for r in reports),
            "locked": sum(len(r.locked) for r in reports)}


async def collect_only(config: dict) -> dict:
    settings = S3Settings(endpoint_url=config["endpoint"], bucket=config["bucket"],
                          access_key=Secret(config["access"]), secret_key=Secret(config["secret"]))
    key = RepoKey.from_bytes(config["repo_id"], bytes.fromhex(config["key"]))
    async with open_store(settings, ensure_bucket=False) as raw:
        counting = Counting(raw)
        store = sealed(counting, Sealer(key))
        before = rss_now()
        start = time.monotonic()
        reports = await gc.collect(store, grace=DAY, wait=0, now=config["now"], repack_below=config["repack_below"])
        elapsed = time.monotonic() - start
    return {"seconds": elapsed, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "rss_before": before, "requests": counting.summary(), **summarise(reports)}


def run_child(work: Path, config: dict) -> dict:
    path = work / f"collect-{secrets.token_hex(4)}.json"
    path.touch(mode=0o600)
    path.write_text(json.dumps(config))
    try:
        out = subprocess.run([sys.executable, __file__, "--collect-only", str(path)], check=True,
                             stdout=subprocess.PIPE, text=True).stdout
    finally:
        path.unlink(missing_ok=True)
    return json.loads(out.strip().splitlines()[-1])


# -- the run ---------------------------------------------------------------------------------------------------------

async def packs_in(store: Any) -> tuple[int, int]:
    sizes = [info.size async for info in store.list(gc.PACKS_PREFIX)]
    return len(sizes), sum(sizes)


async def generate(store: Any, args: argparse.Namespace) -> Generator:
    gen = Generator(store, args.vms, args.restore_points // args.vms, args.chunks)
    say(f"generating {gen.vms} VMs x {gen.points} restore points, disks of {gen.disk:,} chunks, "
        f"{gen.changed:,} rewritten by each incremental")
    start = time.monotonic()
    await gen.run()
    gen.seconds = time.monotonic() - start
    say(f"generated {gen.vms * gen.points:,} restore points, {gen.chunks:,} chunks in {gen.packs:,} packs "
        f"in {gen.seconds:.1f} s")
    gen.forgotten = await gen.forget_oldest()
    say(f"forgot the oldest {gen.forgotten:,} restore points")
    return gen


def report(args: argparse.Namespace, gen: Generator, floor: tuple[float, int], packs_before: tuple[int, int],
           runs: list[tuple[str, dict]], memory_note: str) -> bool:
    floor_s, floor_n = floor
    points = gen.vms * gen.points
    print(f"\nGC benchmark, store {args.store}: {points:,} restore points ({gen.forgotten:,} forgotten) of {gen.vms} "
          f"VMs, {gen.chunks:,} chunks in {packs_before[0]:,} packs ({human(packs_before[1])}), encrypted")
    print(f"  generation (not a target) {gen.seconds:.1f} s")
    print(f"  baseline: list + GET and open every manifest and index one by one ({floor_n:,} objects)  "
          f"{floor_s:.1f} s")
    met = True
    for name, r in runs:
        print(f"  {name}")
        ratio = f"{r['seconds'] / floor_s:.2f}x the baseline" if floor_s >= 0.05 else "baseline too small to compare"
        print(f"    wall time {r['seconds']:.1f} s ({ratio}; a collection reads the catalog at mark and again at "
              "sweep)")
        if r.get("peak_rss") is not None:
            print(f"    peak RSS of the GC process {human(r['peak_rss'])} (RSS before the GC {human(r['rss_before'])})")
            met = met and r["peak_rss"] < TARGET
        if r.get("traced_peak") is not None:
            print(f"    tracemalloc peak of a dry run {human(r['traced_peak'])}")
            met = met and r["traced_peak"] < TARGET
        print(f"    packs condemned {r['condemned']:,}, deleted {r['deleted']:,}, freed {human(r['freed'])}, "
              f"spared {r['spared']}, locked {r['locked']}")
        print(f"    requests: {r['requests']}")
    print(f"  peak memory under {TARGET // MIB} MiB ({memory_note}): {'met' if met else 'MISSED'}")
    return met


async def run_memory(args: argparse.Namespace) -> bool:
    counting = Counting(MemoryStore())
    store = sealed(counting, Sealer(RepoKey.generate()))
    gen = await generate(store, args)
    packs_before = await packs_in(counting)
    floor = await census_floor(store)
    now = time.time() + 10 * DAY
    runs = []
    for name, repack in [("gc.collect, no repack", 0.0)] + ([] if args.no_repack else
                                                            [("gc.collect, repack_below=0.5, after it", 0.5)]):
        tracemalloc.start()
        await gc.collect(store, grace=DAY, wait=0, now=now, dry_run=True, repack_below=repack)
        traced = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        counting.counts.clear()
        counting.bytes_read = 0
        start = time.monotonic()
        reports = await gc.collect(store, grace=DAY, wait=0, now=now, repack_below=repack)
        runs.append((name, {"seconds": time.monotonic() - start, "traced_peak": traced,
                            "requests": counting.summary(), **summarise(reports)}))
    return report(args, gen, floor, packs_before, runs,
                  "tracemalloc peak of a dry run: the GC's Python allocations, not the store's")


async def run_s3(args: argparse.Namespace, work: Path) -> bool:
    port = free_port()
    access, secret = "bench" + secrets.token_hex(4), secrets.token_hex(16)
    if args.store == "embedded":
        process = components.object_store("127.0.0.1", port, work / "objects", work / "object-store.log",
                                          access_key=Secret(access), secret_key=Secret(secret))
    else:
        process = components.moto("127.0.0.1", port, work / "moto.log")
        access, secret = "testing", "testing"
    with process:
        settings = S3Settings(endpoint_url=f"http://127.0.0.1:{port}", bucket="gc-bench",
                              access_key=Secret(access), secret_key=Secret(secret))
        key = RepoKey.generate()
        async with open_store(settings) as raw:
            store = sealed(raw, Sealer(key))
            gen = await generate(store, args)
            packs_before = await packs_in(raw)
            say("baseline: a census's reads, one by one")
            floor = await census_floor(store)
        config = {"endpoint": settings.endpoint_url, "bucket": settings.bucket, "access": access, "secret": secret,
                  "repo_id": key.repo_id, "key": key.to_bytes().hex(), "now": time.time() + 10 * DAY}
        runs = []
        for name, repack in [("gc.collect, no repack", 0.0)] + ([] if args.no_repack else
                                                                [("gc.collect, repack_below=0.5, after it", 0.5)]):
            say(f"{name}: in a child process")
            runs.append((name, run_child(work, {**config, "repack_below": repack})))
    return report(args, gen, floor, packs_before, runs,
                  "ru_maxrss of the child process that ran only the GC")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=("embedded", "moto", "memory"), default="embedded")
    parser.add_argument("--restore-points", type=int, default=1000, help="in all (default 1,000)")
    parser.add_argument("--chunks", type=int, default=200_000, help="distinct chunks, at least (default 200,000)")
    parser.add_argument("--vms", type=int, default=50, help="default 50")
    parser.add_argument("--no-repack", action="store_true", help="skip the second collection, with repack_below=0.5")
    parser.add_argument("--work", type=Path, help="scratch directory (default: a new one under /var/tmp)")
    parser.add_argument("--collect-only", type=Path, help=argparse.SUPPRESS)  # the child: one collection
    args = parser.parse_args()
    if args.collect_only:
        print(json.dumps(asyncio.run(collect_only(json.loads(args.collect_only.read_text())))))
        return 0
    if args.restore_points < args.vms or args.vms < 1:
        parser.error("--restore-points must be at least --vms, and --vms at least 1")
    print("note: the machine may be shared with other work: times vary between runs", flush=True)
    if args.store == "memory":
        return 0 if asyncio.run(run_memory(args)) else 1
    work = args.work or Path(tempfile.mkdtemp(prefix="olvm-bench-gc-", dir="/var/tmp"))
    try:
        return 0 if asyncio.run(run_s3(args, work)) else 1
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
