"""Reads and writes of an imageio transfer over blocking HTTPS connections, one per worker thread.

Bulk data goes through here, on small machines bound by TLS and copying:
asyncio's TLS layer encrypts and decrypts in the event loop's thread, and
aiohttp joins a body from small pieces in Python, while `http.client` over an
`ssl` socket does both in C with the GIL released, so parallel requests from
threads use every core (as `ovirt_imageio.client` does). Extents and control
requests stay on the asyncio client (imageio.py).
"""
from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import queue
import socket
import ssl
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

from .imageio import ImageioUnavailable, answer_error, ssl_context
from .retry import IMAGEIO, retry

log = logging.getLogger(__name__)

TIMEOUT = 120.0


class _LocalConnection(http.client.HTTPConnection):
    """HTTP over the daemon's local socket (imageio's `[local]` service): the same requests, without TLS."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class BlockingImageio:
    """Requests to the transfer URL (the host), or the proxy once the host cannot be reached. Callers bound
    their requests in flight (and the buffers they hold) with `slots`; each request runs in its own thread."""

    def __init__(self, transfer_url: str, proxy_url: str | None, ca_file: str, insecure: bool,
                 connections: int = 4, *, local_socket: bool = True, known_local: str | None = None) -> None:
        """`known_local`: what `local_path` said for this transfer URL before ("" for TLS), to skip the probe."""
        self._may_go_local = local_socket
        self._urls = [u for u in (transfer_url, proxy_url) if u]
        self._target(self._urls[0])
        if known_local is not None and local_socket:
            self._local = known_local
        context = ssl_context(ca_file, insecure)
        self._ssl = context if isinstance(context, ssl.SSLContext) else ssl._create_unverified_context()
        self._idle: queue.SimpleQueue[http.client.HTTPConnection] = queue.SimpleQueue()
        self._all: list[http.client.HTTPConnection] = []
        self._local_lock = threading.Lock()
        self._threads = ThreadPoolExecutor(connections, thread_name_prefix="imageio")
        self.slots = asyncio.Semaphore(connections)
        self.bytes_read = 0
        self.bytes_written = 0

    def _target(self, url: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.url = url
        self._host, self._port, self._path = parsed.hostname or "", parsed.port or 443, parsed.path
        # The daemon's local socket; "" for TLS only; None: not asked yet (each daemon is asked once).
        self._local: str | None = None if self._may_go_local else ""

    def _connection(self) -> http.client.HTTPConnection:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            path = self._local_socket()
            if not path:
                with contextlib.suppress(queue.Empty):
                    return self._idle.get_nowait()  # the probe's TLS connection
            conn: http.client.HTTPConnection = (
                _LocalConnection(path, TIMEOUT) if path else
                http.client.HTTPSConnection(self._host, self._port, context=self._ssl, timeout=TIMEOUT))
            self._all.append(conn)
            return conn

    def _local_socket(self) -> str:
        """The daemon's local socket when we run on its host, as imageio's own client does: a TLS connection
        whose two ends have the same address, and an OPTIONS answer naming `unix_socket`. Bulk data then skips
        TLS on both sides. Anything else (or a socket we may not open) keeps TLS."""
        with self._local_lock:
            if self._local is None:
                self._local = ""
                probe = http.client.HTTPSConnection(self._host, self._port, context=self._ssl, timeout=TIMEOUT)
                self._all.append(probe)
                reusable = False
                try:
                    probe.connect()
                    if probe.sock.getsockname()[0] == probe.sock.getpeername()[0]:
                        probe.request("OPTIONS", self._path)
                        resp = probe.getresponse()
                        body = resp.read()
                        path = json.loads(body).get("unix_socket") if resp.status == 200 else None
                        if isinstance(path, str) and path:
                            with contextlib.closing(_LocalConnection(path, TIMEOUT)) as local:
                                local.connect()
                            self._local = path
                    reusable = not self._local
                except (OSError, http.client.HTTPException, ValueError, AttributeError) as e:
                    log.info("imageio %s: no local socket to use (%s): TLS it is", self.url, e)
                if reusable:
                    self._idle.put(probe)  # a TLS connection like the others: the next request takes it
                else:
                    probe.close()
            return self._local

    @property
    def local(self) -> bool:
        """Whether requests go over the daemon's local socket."""
        return bool(self._local)

    @property
    def local_path(self) -> str | None:
        """The local socket of the transfer URL, "" if it goes over TLS, None if unknown or moved to the proxy."""
        return self._local if self.url == self._urls[0] else None

    def _exchange(self, method: str, query: str, headers: dict[str, str], body: Iterable[memoryview] | None,
                  expect: tuple[int, ...], what: str) -> bytes:
        """One request on an idle connection; the response body, read whole in C."""
        conn = self._connection()
        try:
            conn.request(method, self._path + query, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            failed = self.url
            if isinstance(conn, _LocalConnection):
                if isinstance(e, (FileNotFoundError, ConnectionRefusedError, PermissionError)):
                    log.info("imageio %s: local socket unusable (%s): going on over TLS", failed, e)
                    self._local = ""  # the retry goes over TLS; the host itself may be fine
            elif isinstance(e, ConnectionRefusedError) and self._urls[-1] != failed:
                self._target(self._urls[self._urls.index(failed) + 1])  # the retry goes to the proxy
                self.close_connections()
            raise ImageioUnavailable(f"{what}: {type(e).__name__}: {e}", url=failed) from None
        if resp.status not in expect:
            conn.close()
            raise answer_error(what, resp.status, data, self.url)
        self._idle.put(conn)
        return data

    async def _run(self, what: str, call) -> bytes:
        loop = asyncio.get_running_loop()
        return await retry(lambda: loop.run_in_executor(self._threads, call), what=f"imageio {what}", policy=IMAGEIO)

    async def read(self, offset: int, length: int) -> bytes:
        what = f"GET at {offset}"
        data = await self._run(what, lambda: self._exchange(
            "GET", "", {"Range": f"bytes={offset}-{offset + length - 1}"}, None, (200, 206), what))
        if len(data) != length:
            raise ImageioUnavailable(f"{what}: asked {length} bytes, got {len(data)}", url=self.url)
        self.bytes_read += length
        return data

    async def write(self, offset: int, parts: list[memoryview]) -> None:
        """PUT the concatenation of `parts` at `offset`; parts go out one by one, never joined."""
        length = sum(len(p) for p in parts)
        what = f"PUT at {offset}"
        headers = {"Content-Range": f"bytes {offset}-{offset + length - 1}/*", "Content-Length": str(length)}
        await self._run(what, lambda: self._exchange("PUT", "?flush=n", headers, iter(parts), (200,), what))
        self.bytes_written += length

    def close_connections(self) -> None:
        for conn in self._all:
            conn.close()
        self._all.clear()

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        self.close_connections()

    def __enter__(self) -> "BlockingImageio":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
