"""The product's imageio access (olvm_backup/imageio.py) against the simulator's real imageio daemons: the data
lands where it was sent and reads back, the proxy takes over when the host cannot be reached, extents say where
the data is, the daemon's local socket is used unless told not to, and a PUT imageio refuses is a clear error."""
from __future__ import annotations

import asyncio
import random
import socket
import urllib.parse

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
from ovirt_imageio import client

from olvm_backup.imageio import ImageioError, Transfer
from olvm_backup.planning import Extent, merge_extents
from tests.sim.conftest import create_transfer, finalize_transfer, wait_disk_ok

MIB = 1024 * 1024
SIZE = 16 * MIB


@pytest.fixture
def connection(sim):
    c = sim.connection
    conn = sdk.Connection(url=c["url"], username=c["username"], password=c["password"], ca_file=c["ca_file"])
    yield conn
    conn.close()


@pytest.fixture
def upload(connection):
    """A new 16 MiB raw disk with an upload transfer open on it; finalized by the test (or cancelled)."""
    disks = connection.system_service().disks_service()
    disk = disks.add(types.Disk(name=f"writer-{random.randrange(1 << 30)}", format=types.DiskFormat.RAW,
                                provisioned_size=SIZE, sparse=True,
                                storage_domains=[types.StorageDomain(name="data1")]))
    wait_disk_ok(connection, disk.id)
    transfer = create_transfer(connection, disk=types.Disk(id=disk.id), direction=types.ImageTransferDirection.UPLOAD)
    yield disk, transfer
    svc = connection.system_service().image_transfers_service().image_transfer_service(transfer.id)
    if svc.get().phase == types.ImageTransferPhase.TRANSFERRING:
        svc.cancel()
    wait_disk_ok(connection, disk.id)
    disks.disk_service(disk.id).remove()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def download(connection, sim, disk_id: str, path) -> bytes:
    t = create_transfer(connection, disk=types.Disk(id=disk_id), direction=types.ImageTransferDirection.DOWNLOAD)
    client.download(t.transfer_url, str(path), sim.connection["ca_file"], fmt="raw", proxy_url=t.proxy_url)
    finalize_transfer(connection, t)
    wait_disk_ok(connection, disk_id)
    return path.read_bytes()


def transfer(url: str, proxy_url: str | None, sim, **kw) -> Transfer:
    return Transfer(url, proxy_url, ca_file=sim.connection["ca_file"], insecure=False, **kw)


def test_parts_land_where_sent_through_the_proxy_when_the_host_is_down(sim, connection, upload, tmp_path):
    disk, t = upload
    host_down = urllib.parse.urlsplit(t.transfer_url)._replace(netloc=f"127.0.0.1:{closed_port()}").geturl()
    rnd = random.Random(7)
    a, b, c = rnd.randbytes(MIB), rnd.randbytes(512 * 1024), rnd.randbytes(3 * MIB)

    async def write() -> Transfer:
        async with transfer(host_down, t.proxy_url, sim) as writer:
            await writer.write(0, [memoryview(a), memoryview(b)])        # two chunks, one request
            await writer.write(10 * MIB, [memoryview(c)[MIB:]])         # a slice of a chunk
            await writer.flush()
        return writer
    writer = asyncio.run(write())
    assert writer.url == t.proxy_url, "the writer should have moved to the proxy"
    assert writer.bytes_written == len(a) + len(b) + 2 * MIB
    finalize_transfer(connection, t)

    image = download(connection, sim, disk.id, tmp_path / "back.raw")
    expected = bytearray(SIZE)
    expected[0:len(a) + len(b)] = a + b
    expected[10 * MIB:12 * MIB] = c[MIB:]
    assert image == bytes(expected)


def test_a_refused_put_is_a_clear_error(sim, connection, upload):
    disk, t = upload

    async def write_past_the_end() -> None:
        async with transfer(t.transfer_url, t.proxy_url, sim) as writer:
            await writer.write(SIZE, [memoryview(b"x" * 4096)])
    with pytest.raises(ImageioError, match=r"PUT at 16777216 answered 4\d\d"):
        asyncio.run(write_past_the_end())


def test_reads_and_extents_say_what_was_written_through_the_proxy_when_the_host_is_down(sim, connection, upload):
    disk, t = upload
    host_down = urllib.parse.urlsplit(t.transfer_url)._replace(netloc=f"127.0.0.1:{closed_port()}").geturl()
    data = random.Random(11).randbytes(4 * MIB)

    async def write_then_read() -> tuple[list, list[Extent]]:
        async with transfer(t.transfer_url, t.proxy_url, sim) as w:
            await w.write(2 * MIB, [memoryview(data)])
            await w.flush()
        async with transfer(host_down, t.proxy_url, sim) as r:
            got = await asyncio.gather(r.read(2 * MIB, MIB), r.read(3 * MIB, 3 * MIB), r.read(0, MIB))
            assert r.url == t.proxy_url, "the reader should have moved to the proxy"
            assert r.bytes_read == 5 * MIB
            return got, await r.extents(incremental=False)
    (head, rest, before), extents = asyncio.run(write_then_read())
    assert head == data[:MIB] and rest == data[MIB:] and before == bytes(MIB)
    # What a full backup reads: the written range is data, past it the disk reads as zeros (qemu may allocate
    # the image's first block on its own).
    merged = merge_extents(extents)
    assert Extent(2 * MIB, 4 * MIB, True) in merged and merged[-1] == Extent(6 * MIB, SIZE - 6 * MIB, False)
    assert sum(e.length for e in extents) == SIZE
    finalize_transfer(connection, t)


@pytest.mark.parametrize("local_socket", [True, False], ids=["local-socket", "tls"])
def test_on_the_daemons_host_data_skips_tls_unless_told_not_to(sim, connection, upload, local_socket):
    # The simulator's daemon runs on this machine, and names its local socket in OPTIONS as a host's does.
    disk, t = upload
    data = random.Random(5).randbytes(2 * MIB)

    async def roundtrip() -> tuple[bool, bytes]:
        async with transfer(t.transfer_url, t.proxy_url, sim, local_socket=local_socket) as io:
            await io.write(MIB, [memoryview(data)])
            got = await io.read(MIB, 2 * MIB)
            return io.local, got
    local, got = asyncio.run(roundtrip())
    assert got == data
    assert local is local_socket
    finalize_transfer(connection, t)
