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
import http.client
import queue
import ssl
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

from .imageio import ImageioUnavailable, ssl_context, status_error
from .retry import retry

TIMEOUT = 120.0


class BlockingImageio:
    """Requests to the transfer URL (the host), or the proxy once the host cannot be reached. Callers bound
    their requests in flight (and the buffers they hold) with `slots`; each request runs in its own thread."""

    def __init__(self, transfer_url: str, proxy_url: str | None, ca_file: str, insecure: bool,
                 connections: int = 4) -> None:
        self._urls = [u for u in (transfer_url, proxy_url) if u]
        self._target(self._urls[0])
        context = ssl_context(ca_file, insecure)
        self._ssl = context if isinstance(context, ssl.SSLContext) else ssl._create_unverified_context()
        self._idle: queue.SimpleQueue[http.client.HTTPSConnection] = queue.SimpleQueue()
        self._all: list[http.client.HTTPSConnection] = []
        self._threads = ThreadPoolExecutor(connections, thread_name_prefix="imageio")
        self.slots = asyncio.Semaphore(connections)
        self.bytes_read = 0
        self.bytes_written = 0

    def _target(self, url: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.url = url
        self._host, self._port, self._path = parsed.hostname or "", parsed.port or 443, parsed.path

    def _connection(self) -> http.client.HTTPSConnection:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            conn = http.client.HTTPSConnection(self._host, self._port, context=self._ssl, timeout=TIMEOUT)
            self._all.append(conn)
            return conn

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
            if isinstance(e, ConnectionRefusedError) and self._urls[-1] != failed:
                self._target(self._urls[self._urls.index(failed) + 1])  # the retry goes to the proxy
                self.close_connections()
            raise ImageioUnavailable(f"{what}: {type(e).__name__}: {e}", url=failed) from None
        if resp.status not in expect:
            conn.close()
            raise status_error(resp.status)(f"{what} answered {resp.status}: {data[:300].decode(errors='replace')}", url=self.url)
        self._idle.put(conn)
        return data

    async def _run(self, what: str, call) -> bytes:
        loop = asyncio.get_running_loop()
        return await retry(lambda: loop.run_in_executor(self._threads, call), what=f"imageio {what}", attempts=4,
                           deadline=60)

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
