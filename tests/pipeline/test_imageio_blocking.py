"""The restorer's threaded imageio writer against the simulator's real imageio daemons: the data lands where it
was sent, the proxy takes over when the host cannot be reached, and a PUT imageio refuses is a clear error."""
from __future__ import annotations

import asyncio
import random
import socket
import urllib.parse

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
from ovirt_imageio import client

from olvm_backup.imageio import ImageioError
from olvm_backup.imageio_blocking import BlockingImageio
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
                                provisioned_size=SIZE, sparse=True, storage_domains=[types.StorageDomain(name="data1")]))
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


def test_parts_land_where_sent_through_the_proxy_when_the_host_is_down(sim, connection, upload, tmp_path):
    disk, transfer = upload
    host_down = urllib.parse.urlsplit(transfer.transfer_url)._replace(netloc=f"127.0.0.1:{closed_port()}").geturl()
    writer = BlockingImageio(host_down, transfer.proxy_url, sim.connection["ca_file"], insecure=False)
    rnd = random.Random(7)
    a, b, c = rnd.randbytes(MIB), rnd.randbytes(512 * 1024), rnd.randbytes(3 * MIB)

    async def write() -> None:
        await writer.write(0, [memoryview(a), memoryview(b)])        # two chunks, one request
        await writer.write(10 * MIB, [memoryview(c)[MIB:]])         # a slice of a chunk
    try:
        asyncio.run(write())
    finally:
        writer.close()
    assert writer.url == transfer.proxy_url, "the writer should have moved to the proxy"
    assert writer.bytes_written == len(a) + len(b) + 2 * MIB
    finalize_transfer(connection, transfer)

    image = download(connection, sim, disk.id, tmp_path / "back.raw")
    expected = bytearray(SIZE)
    expected[0:len(a) + len(b)] = a + b
    expected[10 * MIB:12 * MIB] = c[MIB:]
    assert image == bytes(expected)


def test_a_refused_put_is_a_clear_error(sim, connection, upload):
    disk, transfer = upload
    writer = BlockingImageio(transfer.transfer_url, transfer.proxy_url, sim.connection["ca_file"], insecure=False)
    try:
        with pytest.raises(ImageioError, match=r"PUT at 16777216 answered 4\d\d"):
            asyncio.run(writer.write(SIZE, [memoryview(b"x" * 4096)]))  # past the end of the disk
    finally:
        writer.close()


def test_reads_return_what_was_written_through_the_proxy_when_the_host_is_down(sim, connection, upload):
    disk, transfer = upload
    host_down = urllib.parse.urlsplit(transfer.transfer_url)._replace(netloc=f"127.0.0.1:{closed_port()}").geturl()
    data = random.Random(11).randbytes(4 * MIB)

    async def write_then_read() -> list[bytes]:
        with BlockingImageio(transfer.transfer_url, transfer.proxy_url, sim.connection["ca_file"], False) as w:
            await w.write(2 * MIB, [memoryview(data)])
        with BlockingImageio(host_down, transfer.proxy_url, sim.connection["ca_file"], False) as r:
            got = await asyncio.gather(r.read(2 * MIB, MIB), r.read(3 * MIB, 3 * MIB), r.read(0, MIB))
            assert r.url == transfer.proxy_url, "the reader should have moved to the proxy"
            assert r.bytes_read == 5 * MIB
            return got
    head, rest, before = asyncio.run(write_then_read())
    assert head == data[:MIB] and rest == data[MIB:] and before == bytes(MIB)
    finalize_transfer(connection, transfer)


@pytest.mark.parametrize("local_socket", [True, False], ids=["local-socket", "tls"])
def test_on_the_daemons_host_data_skips_tls_unless_told_not_to(sim, connection, upload, local_socket):
    # The simulator's daemon runs on this machine, and names its local socket in OPTIONS as a host's does.
    disk, transfer = upload
    data = random.Random(5).randbytes(2 * MIB)

    async def roundtrip() -> tuple[bool, bytes]:
        with BlockingImageio(transfer.transfer_url, transfer.proxy_url, sim.connection["ca_file"], False,
                             local_socket=local_socket) as io:
            await io.write(MIB, [memoryview(data)])
            got = await io.read(MIB, 2 * MIB)
            return io.local, got
    local, got = asyncio.run(roundtrip())
    assert got == data
    assert local is local_socket
    finalize_transfer(connection, transfer)


def test_a_local_socket_that_went_away_falls_back_to_tls(sim, connection, upload, tmp_path):
    # A reader remembers a ticket's local socket between tasks; if the socket is gone, the data still comes.
    disk, transfer = upload
    data = random.Random(6).randbytes(MIB)

    async def roundtrip() -> tuple[bool, bytes]:
        with BlockingImageio(transfer.transfer_url, transfer.proxy_url, sim.connection["ca_file"], False,
                             known_local=str(tmp_path / "gone.sock")) as io:
            await io.write(0, [memoryview(data)])
            return io.local, await io.read(0, MIB)
    local, got = asyncio.run(roundtrip())
    assert got == data and local is False
    finalize_transfer(connection, transfer)
