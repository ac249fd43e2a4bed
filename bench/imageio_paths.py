"""The product's imageio access (olvm_backup/imageio.py, the library's client in threads) against a hand-written
http.client path (one connection per thread, the body read whole in C: what the product used before), in the
same run, in pairs: writing then reading a disk through the simulator's real imageio daemon, over TLS and over
the daemon's local socket.

    .venv/bin/python bench/imageio_paths.py [--gib 1] [--pairs 3]
"""
from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import random
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ovirtsdk4.types as types

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from olvm_backup.imageio import Transfer  # noqa: E402
from tests.sim.conftest import create_transfer, start_sim, wait_disk_ok  # noqa: E402

MIB = 1 << 20
CONNECTIONS = 4
READ = 1 * MIB   # a chunk, as readers GET them
WRITE = 8 * MIB  # as the restorer PUTs them


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=120)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)  # as the earlier path did
        self.sock.connect(self._path)


class HandWritten:
    """The earlier path, reduced to its data requests: a connection per thread, TLS or the local socket."""

    def __init__(self, url: str, ca_file: str, local: bool) -> None:
        parsed = urllib.parse.urlsplit(url)
        self._host, self._port, self._path = parsed.hostname, parsed.port, parsed.path
        self._ssl = ssl.create_default_context(cafile=ca_file)
        self._socket = None
        if local:
            probe = http.client.HTTPSConnection(self._host, self._port, context=self._ssl)
            probe.request("OPTIONS", self._path)
            self._socket = json.loads(probe.getresponse().read()).get("unix_socket")
            probe.close()
        self._mine = threading.local()
        self._threads = ThreadPoolExecutor(CONNECTIONS)

    def _conn(self) -> http.client.HTTPConnection:
        if not hasattr(self._mine, "conn"):
            self._mine.conn = (_Unix(self._socket) if self._socket else
                               http.client.HTTPSConnection(self._host, self._port, context=self._ssl, timeout=120))
        return self._mine.conn

    def _get(self, offset: int, length: int) -> bytes:
        conn = self._conn()
        conn.request("GET", self._path, headers={"Range": f"bytes={offset}-{offset + length - 1}"})
        data = conn.getresponse().read()
        assert len(data) == length
        return data

    def _put(self, offset: int, parts: list[memoryview]) -> None:
        length = sum(len(p) for p in parts)
        conn = self._conn()
        conn.request("PUT", self._path + "?flush=n", body=iter(parts), headers={
            "Content-Range": f"bytes {offset}-{offset + length - 1}/*", "Content-Length": str(length)})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200, resp.status

    async def read(self, offset: int, length: int) -> bytes:
        return await asyncio.get_running_loop().run_in_executor(self._threads, self._get, offset, length)

    async def write(self, offset: int, parts: list[memoryview]) -> None:
        await asyncio.get_running_loop().run_in_executor(self._threads, self._put, offset, parts)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        self._threads.shutdown()


async def drive(io, size: int, step: int, op: str, data: memoryview) -> float:
    limit = asyncio.Semaphore(CONNECTIONS)

    async def one(offset: int) -> None:
        try:
            if op == "read":
                await io.read(offset, step)
            else:
                await io.write(offset, [data[:step // 2], data[step // 2:step]])  # two parts, as chunks are
        finally:
            limit.release()

    t0 = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for offset in range(0, size, step):
            await limit.acquire()
            group.create_task(one(offset))
    return time.perf_counter() - t0


async def measure(kind: str, url: str, ca_file: str, local: bool, size: int, op: str, data: memoryview) -> float:
    step = READ if op == "read" else WRITE
    if kind == "library":
        async with Transfer(url, None, ca_file=ca_file, insecure=False, local_socket=local,
                            connections=CONNECTIONS) as io:
            assert io.local is local, f"expected local={local}"
            return await drive(io, size, step, op, data)
    async with HandWritten(url, ca_file, local) as io:
        return await drive(io, size, step, op, data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    size = int(args.gib * 1024) * MIB
    data = memoryview(random.Random(1).randbytes(WRITE))
    with tempfile.TemporaryDirectory(prefix="imageio-bench-") as tmp:
        sim = start_sim(Path(tmp) / "sim")
        try:
            conn = sim.connect()
            disks = conn.system_service().disks_service()
            disk = disks.add(types.Disk(name="bench", format=types.DiskFormat.RAW, provisioned_size=size,
                                        sparse=True, storage_domains=[types.StorageDomain(name="data1")]))
            wait_disk_ok(conn, disk.id)
            transfer = create_transfer(conn, disk=types.Disk(id=disk.id),
                                       direction=types.ImageTransferDirection.UPLOAD, inactivity_timeout=3600)
            ca_file = sim.connection["ca_file"]
            figures: dict[tuple[str, str, str], list[float]] = {}
            for n in range(args.pairs):
                for op in ("write", "read"):
                    for over in ("tls", "local"):
                        # Alternate which goes first, so neither always meets a warm page cache.
                        kinds = ("library", "hand-written") if n % 2 == 0 else ("hand-written", "library")
                        for kind in kinds:
                            s = asyncio.run(measure(kind, transfer.transfer_url, ca_file, over == "local", size,
                                                    op, data))
                            figures.setdefault((op, over, kind), []).append(s)
                            print(f"pair {n + 1}: {op:5} {over:5} {kind:12} {s:6.2f} s "
                                  f"({size / MIB / s:6.0f} MiB/s)", flush=True)
            print(f"\n{size / MIB:.0f} MiB, {CONNECTIONS} connections; best (median) of {args.pairs}:")
            for op in ("write", "read"):
                for over in ("tls", "local"):
                    lib, hand = figures[(op, over, "library")], figures[(op, over, "hand-written")]
                    print(f"  {op:5} {over:5} library {min(lib):5.2f} s ({statistics.median(lib):5.2f})   "
                          f"hand-written {min(hand):5.2f} s ({statistics.median(hand):5.2f})   "
                          f"ratio {min(lib) / min(hand):.2f}x")
            conn.system_service().image_transfers_service().image_transfer_service(transfer.id).cancel()
            conn.close()
        finally:  # not sim.stop(): its check of the shared /tmp would blame other processes' files
            sim.proc.terminate()
            sim.proc.wait(60)


if __name__ == "__main__":
    main()
