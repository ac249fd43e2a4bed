"""Writes to an imageio transfer over blocking HTTPS connections, one per worker thread.

Restores are bound by TLS and copying on small machines: asyncio's TLS layer
encrypts in the event loop's thread, while `http.client` over an `ssl`
socket encrypts in C with the GIL released, so parallel PUTs from threads use
every core (as `ovirt_imageio.client` does). Reads and control requests stay
on the asyncio client (imageio.py).
"""
from __future__ import annotations

import asyncio
import http.client
import queue
import ssl
import urllib.parse

from .imageio import ImageioError, ImageioUnavailable, ssl_context
from .retry import retry

TIMEOUT = 120.0


class ThreadedWriter:
    """PUTs to the transfer URL (the host), or the proxy once the host cannot be reached."""

    def __init__(self, transfer_url: str, proxy_url: str | None, ca_file: str, insecure: bool,
                 connections: int = 4) -> None:
        self._urls = [u for u in (transfer_url, proxy_url) if u]
        self._target(self._urls[0])
        context = ssl_context(ca_file, insecure)
        self._ssl = context if isinstance(context, ssl.SSLContext) else ssl._create_unverified_context()
        self._idle: queue.SimpleQueue[http.client.HTTPSConnection] = queue.SimpleQueue()
        self._all: list[http.client.HTTPSConnection] = []
        self.slots = asyncio.Semaphore(connections)  # callers bound their requests (and buffers) with it
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

    def _put(self, offset: int, parts: list[memoryview], length: int) -> None:
        conn = self._connection()
        try:
            # An iterable body is sent part by part: contiguous chunks go out without being joined first.
            conn.request("PUT", self._path + "?flush=n", body=iter(parts), headers={
                "Content-Range": f"bytes {offset}-{offset + length - 1}/*", "Content-Length": str(length)})
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            failed = self.url
            if isinstance(e, ConnectionRefusedError) and self._urls[-1] != failed:
                self._target(self._urls[self._urls.index(failed) + 1])  # the retry goes to the proxy
                self.close()
            raise ImageioUnavailable(f"PUT at {offset}: {type(e).__name__}: {e}", url=failed) from None
        if resp.status != 200:
            conn.close()
            err = ImageioUnavailable if resp.status >= 500 else ImageioError
            raise err(f"PUT at {offset} answered {resp.status}: {body[:300].decode(errors='replace')}",
                      url=self.url)
        self._idle.put(conn)

    async def write(self, offset: int, parts: list[memoryview]) -> None:
        """PUT the concatenation of `parts` at `offset`."""
        length = sum(len(p) for p in parts)
        await retry(lambda: asyncio.to_thread(self._put, offset, parts, length), what="imageio PUT", attempts=4,
                    deadline=60)
        self.bytes_written += length

    def close(self) -> None:
        for conn in self._all:
            conn.close()
        self._all.clear()
