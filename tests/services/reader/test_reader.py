"""The reader against an imageio host and proxy that always fail: one read task makes the documented number of
requests (olvm_backup/imageio.py: IMAGEIO.attempts x the two URLs) and gives up with an error nobody retries."""
from __future__ import annotations

import asyncio
import http.server
import socketserver
import threading

import pytest

from olvm_backup.format.chunks import ChunkCodec
from olvm_backup.config import EngineSettings
from olvm_backup.errors import GaveUp
from olvm_backup.imageio import ImageioError
from olvm_backup.repository.chunkindex import ChunkIndex
from olvm_backup.retry import IMAGEIO, is_retriable
from schemas import ReadTask, TransferGone
from schemas.topics import READ_RESULTS
from services.reader.reader import Reader

TOPIC = "chunks.test"


class Counting(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, handler) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.count = 0
        self.lock = threading.Lock()

    def counted(self) -> None:
        with self.lock:
            self.count += 1

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/images/ticket"


class HangsUp(socketserver.BaseRequestHandler):
    """A host that accepts and closes at once, before any answer: it cannot be reached."""

    def handle(self) -> None:
        self.server.counted()


class Unavailable(http.server.BaseHTTPRequestHandler):
    """A proxy that answers 503 to every request."""

    def _fail(self) -> None:
        self.server.counted()
        body = b"no NBD server\n"
        self.send_response(503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_OPTIONS = do_GET = do_PUT = do_PATCH = _fail

    def log_message(self, *args) -> None:
        pass


class Bus:
    """What the reader asks of the bus before it reads: the wave's topic is there."""

    published: list = []

    async def topics(self) -> set[str]:
        return {TOPIC}

    def forget(self, topic: str) -> None:
        pass

    async def publish(self, *args, **kw) -> None:
        self.published.append(args)


@pytest.fixture
def servers():
    host, proxy = Counting(HangsUp), Counting(Unavailable)
    for s in (host, proxy):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield host, proxy
    for s in (host, proxy):
        s.shutdown()
        s.server_close()


def test_a_read_task_against_a_failing_imageio_makes_the_documented_number_of_requests(servers):
    host, proxy = servers
    task = ReadTask(backup_id="b", task_id="b/d/0", disk_id="d", transfer_url=host.url, proxy_url=proxy.url,
                    incremental=False, offset=0, length=8 << 20, chunk_size=1 << 20, chunk_topic=TOPIC,
                    connections=4, extents=[(0, 8 << 20, True)])
    reader = Reader(Bus(), ChunkIndex(), EngineSettings(insecure=True), ChunkCodec())
    with pytest.raises(GaveUp) as failed:
        asyncio.run(reader.on_task(task, None))
    # Each attempt: the host, which cannot be reached, then the proxy, which answers 503. Not a product of
    # nested retries, and the consumer loop does not retry what gave up.
    assert (host.count, proxy.count) == (IMAGEIO.attempts, IMAGEIO.attempts)
    assert isinstance(failed.value, ImageioError) and not is_retriable(failed.value)
    assert "answered 503" in str(failed.value)
    assert Bus.published == []


class Forbidden(Unavailable):
    """A daemon whose ticket is gone: 403 to every request, as imageio answers then."""

    def _fail(self) -> None:
        self.server.counted()
        body = b"You are not allowed to access this resource: No such ticket ticket\n"
        self.send_response(403)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_OPTIONS = do_GET = do_PUT = do_PATCH = _fail


class Recording(Bus):
    def __init__(self) -> None:
        self.published = []


def test_a_task_whose_ticket_is_gone_is_reported_to_the_snapshotter_at_once():
    host = Counting(Forbidden)
    threading.Thread(target=host.serve_forever, daemon=True).start()
    try:
        task = ReadTask(backup_id="b", task_id="b/d/0", disk_id="d", transfer_url=host.url, proxy_url=None,
                        incremental=False, offset=0, length=8 << 20, chunk_size=1 << 20, chunk_topic=TOPIC,
                        connections=4, extents=[(0, 8 << 20, True)])
        bus = Recording()
        reader = Reader(bus, ChunkIndex(), EngineSettings(insecure=True), ChunkCodec(), "reader@h:1")
        asyncio.run(reader.on_task(task, None))
    finally:
        host.shutdown()
        host.server_close()
    # Not dropped silently (the snapshotter would wait for its stall timeout), not retried (403 stays 403).
    assert host.count == 1
    [(topic, report)] = bus.published
    assert topic is READ_RESULTS and isinstance(report, TransferGone)
    assert (report.backup_id, report.task_id, report.disk_id, report.transfer_url) == ("b", "b/d/0", "d", host.url)
    assert "403" in report.error and report.reader == "reader@h:1"
