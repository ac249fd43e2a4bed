"""All access to the ovirt-imageio data plane: one transfer (ticket) on a host's daemon, the manager's proxy
as fallback, through the library's own client (`ovirt_imageio.client.ImageioClient`).

A library client holds one blocking HTTP connection (TLS, or the daemon's local
socket when we run on its host), so `Transfer` is an asyncio face over a pool
of them, at most one per worker thread. Blocking `http.client` over an `ssl`
socket encrypts and copies in C with the GIL released: parallel requests from
threads use every core, where asyncio's TLS layer would work in the event
loop's thread.

Failover and retry, here and nowhere else:
- A connection is opened on the URL that last answered (the host first), then
  on the other one when that cannot be reached (connection refused, reset,
  timed out, TLS failure). An answer, even a 5xx, is not failed over: the proxy
  would only pass the request on to the same daemon.
- Each request (a connection's OPTIONS when none is idle, and its first read's
  size lookup, then the read, write, extents or flush) is retried under `retry.IMAGEIO`, on a fresh connection.
  So a request that keeps failing makes at most IMAGEIO.attempts x 2 requests
  (each attempt: the current URL, then the other one when unreachable), then
  raises `ImageioGaveUp` (a GaveUp), which nobody above retries. A read task opens its transfer
  (OPTIONS) before reading in parallel, so a daemon and proxy that never answer
  cost one task exactly that budget.

Measured with bench/imageio_paths.py (same run, pairs in alternating order,
2 cores; 1 GiB through the simulator's daemon, 4 connections, 1 MiB GETs as
readers make, 8 MiB PUTs as the restorer makes), best (median) of 3, this
module vs the earlier hand-written http.client path (body read whole in C,
parts sent as they are):
  read  TLS           1.18 s (1.23)  vs 1.15 s (1.17)   1.03x
  read  local socket  0.59 s (0.59)  vs 0.54 s (0.54)   1.10x (1.00x in an earlier run)
  write TLS           1.23 s (1.29)  vs 1.24 s (1.26)   0.99x
  write local socket  0.76 s (0.82)  vs 0.76 s (0.76)   1.00x
Reads go straight into the caller's buffer (`ImageioClient.read`); streaming
them through the library's own buffer (`write_to`) cost 8-13% more, one more
copy of every byte. The library's streamed PUT (`read_from`) copies every part
into its buffer too: 1.12x over TLS, and restores 4-7% slower in bench/restore.py.
So writes keep one hand-written step, `_Client.put_parts`: the same PUT on the
library's own connection, sending each part as it is.
"""
from __future__ import annotations

import asyncio
import http.client
import logging
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar
from urllib.parse import urlparse

from ovirt_imageio import client as imageio_client
# The library's typed answer error (code, message), and its HTTP backend for the one switch its public client
# lacks: staying on TLS on the daemon's host.
from ovirt_imageio._internal import errors as imageio_errors
from ovirt_imageio._internal import http as imageio_http
from ovirt_imageio._internal.backends import http as imageio_backend

from . import metrics
from .errors import BackupError, GaveUp
from .planning import Extent
from .retry import IMAGEIO, retry

log = logging.getLogger(__name__)
T = TypeVar("T")

MIB = 1024 * 1024
BUFFER_SIZE = 1 * MIB  # per connection: what one socket call moves; a chunk (1 MiB) in one go


class ImageioError(BackupError):
    """imageio's family: an answer that trying again will not change, unless a member says otherwise."""

    template = "imageio {url}: {reason}"


class ImageioUnavailable(ImageioError):
    """Unreachable, a dropped connection, a short body, a 5xx: retried here under IMAGEIO."""

    retriable = True


class ImageioGaveUp(GaveUp, ImageioError):
    """imageio kept failing until the request's budget (IMAGEIO) was spent."""

    template = GaveUp.template


class TicketGone(ImageioError):
    """imageio answered 403: the transfer's ticket was finalized or cancelled, so nobody can read it any more."""


def answer_error(what: str, status: int, message: str, url: str) -> ImageioError | ImageioUnavailable:
    """The error for an imageio answer that is not a success: retriable for a server error, TicketGone for 403."""
    kind = ImageioUnavailable if status >= 500 else TicketGone if status == 403 else ImageioError
    return kind(f"{what} answered {status}: {message[:300]}", url=url)


class _TlsBackend(imageio_backend.Backend):
    """The library's HTTP backend without its move to the daemon's local socket (OLVM_IMAGEIO_LOCAL_SOCKET=false)."""

    def _optimize_connection(self, unix_socket):
        pass


class _Client(imageio_client.ImageioClient):
    """The library's client on one URL (the failover is ours, in Transfer), kept on TLS when told to."""

    def __init__(self, url: str, *, cafile: str | None, secure: bool, local_socket: bool) -> None:
        if local_socket:
            super().__init__(url, cafile=cafile, secure=secure, buffer_size=BUFFER_SIZE)
        else:  # the library's __init__, with a backend that stays on TLS
            self._backend = _TlsBackend(urlparse(url), cafile=cafile, secure=secure)
            self._buf = bytearray(BUFFER_SIZE)
        self.url = url

    def put_parts(self, offset: int, parts: list[memoryview]) -> None:
        """PUT the parts' concatenation at `offset`, each part sent as it is, on the library's connection. The
        library's own streamed PUT (`read_from`) copies every byte into its buffer first, which made restores
        slower than the hand-written path in the same run (module docstring); this is that path's one request,
        on the library's connection, headers and error answer. Not flushed (see Transfer.flush)."""
        backend = self._backend
        length = sum(len(p) for p in parts)
        backend.seek(offset)
        backend._put_header(length)
        for part in parts:
            backend._con.send(part)
        res = backend._con.getresponse()
        body = res.read()
        if res.status != http.client.OK:
            backend._reraise(res.status, body)
        backend.seek(length, os.SEEK_CUR)

    @property
    def local(self) -> bool:
        """Whether this connection is the daemon's local socket (a path) rather than TLS (an address)."""
        return isinstance(self._backend.server_address, str)


_UNREACHABLE = (OSError, http.client.HTTPException)


class Transfer:
    """One transfer's data: requests over at most `connections` library clients, one per worker thread.
    Callers bound their requests in flight (and the buffers they hold) with `slots`.

    `async with` opens the first connection (OPTIONS: max_readers, the local socket) and closes every one on
    exit: an idle connection still holds one of the ticket's few NBD connections."""

    def __init__(self, transfer_url: str, proxy_url: str | None, *, ca_file: str, insecure: bool,
                 local_socket: bool = True, connections: int = 4) -> None:
        self._urls = [u for u in (transfer_url, proxy_url) if u]
        self.url = self._urls[0]  # the one that last answered: new connections go there first
        self._cafile = ca_file or None
        self._secure = not insecure
        self._local_socket = local_socket
        self._idle: queue.SimpleQueue[_Client] = queue.SimpleQueue()
        self._open: set[_Client] = set()
        self._lock = threading.Lock()
        self._threads = ThreadPoolExecutor(max(1, connections), thread_name_prefix="imageio")
        self.slots = asyncio.Semaphore(max(1, connections))
        self.max_readers = 1
        self.local = False
        self.bytes_read = 0
        self.bytes_written = 0

    async def __aenter__(self) -> "Transfer":
        try:
            await self._run("OPTIONS", lambda c: None)
        except BaseException:
            self.close()
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            clients, self._open = list(self._open), set()
        for c in clients:
            c.close()

    # In a worker thread.

    def _connect(self) -> _Client:
        """A new connection: the URL that last answered first, the other one when that cannot be reached."""
        failure: ImageioUnavailable | None = None
        first = self.url
        for url in [first] + [u for u in self._urls if u != first]:
            try:
                c = _Client(url, cafile=self._cafile, secure=self._secure, local_socket=self._local_socket)
            except _UNREACHABLE as e:
                failure = ImageioUnavailable(f"{type(e).__name__}: {e}", url=url)
                continue
            except imageio_http.Error as e:
                raise answer_error("OPTIONS", e.code, str(e), url) from None
            if url != first:
                log.info("imageio %s cannot be reached (%s): going on through %s", first, failure, url)
            with self._lock:
                self._open.add(c)
            self.url, self.max_readers, self.local = url, max(1, int(c.max_readers or 1)), c.local
            return c
        assert failure is not None
        raise failure

    def _call(self, what: str, op: Callable[[_Client], T]) -> T:
        try:
            c = self._idle.get_nowait()
        except queue.Empty:
            c = self._connect()
        try:
            result = op(c)
        except BaseException as e:
            with self._lock:
                self._open.discard(c)
            c.close()  # its connection may be mid-answer: never reused
            if isinstance(e, imageio_http.Error):
                raise answer_error(what, e.code, str(e), c.url) from None
            if isinstance(e, imageio_errors.UnsupportedOperation):
                raise ImageioError(f"{what}: {e}", url=c.url) from None
            if isinstance(e, (*_UNREACHABLE, RuntimeError)):  # RuntimeError: a short body
                raise ImageioUnavailable(f"{what}: {type(e).__name__}: {e}", url=c.url) from None
            raise
        self._idle.put(c)
        return result

    # The asyncio face.

    async def _run(self, what: str, op: Callable[[_Client], T]) -> T:
        loop = asyncio.get_running_loop()

        async def once() -> T:
            try:
                return await loop.run_in_executor(self._threads, self._call, what, op)
            except ImageioError as e:
                metrics.IMAGEIO_ERRORS.labels(type(e).__name__).inc()
                raise

        return await retry(once, what=f"imageio {what}", policy=IMAGEIO, gave_up=ImageioGaveUp)

    async def extents(self, incremental: bool) -> list[Extent]:
        """What must be read: for a full, every extent, data=False for the zero ones; for an incremental, the
        dirty ones (data=False where zeroed), clean ranges left out."""
        if not incremental:
            found = await self._run("extents", lambda c: list(c.extents("zero")))
            return [Extent(e.start, e.length, not e.zero) for e in found]
        found = await self._run("dirty extents", lambda c: list(c.extents("dirty")))
        return [Extent(e.start, e.length, not e.zero) for e in found if e.dirty]

    async def held_ranges(self) -> list[tuple[int, int]]:
        """For a `shallow` transfer of one volume layer: the (start, length) ranges the layer itself holds, data and
        zeros alike. imageio marks a range the layer does not hold as a hole (allocation depth 0: it would read from
        the backing chain); a zero-write or discard in the layer is zero but no hole."""
        found = await self._run("layer extents", lambda c: list(c.extents("zero")))
        if any(e.hole is None for e in found):
            raise ImageioError("extents say nothing of holes (an imageio older than 2.2): a volume layer's own "
                               "ranges cannot be told from its backing chain's", url=self.url)
        return [(e.start, e.length) for e in found if not e.hole]

    async def read(self, offset: int, length: int) -> bytearray:
        def get(c: _Client) -> bytearray:
            buf = bytearray(length)
            # Straight into our buffer (write_to would stream through the library's and copy each byte again);
            # the library asks the image's size once per connection, from the extents.
            if c.read(offset, buf) != length:
                raise RuntimeError(f"asked {length} bytes, got fewer")
            return buf

        data = await self._run(f"GET at {offset}", get)
        self.bytes_read += length
        metrics.IMAGEIO_BYTES.labels("read").inc(length)
        return data

    async def write(self, offset: int, parts: list[memoryview]) -> None:
        """PUT the concatenation of `parts` at `offset` (not flushed: see flush)."""
        length = sum(len(p) for p in parts)
        await self._run(f"PUT at {offset}", lambda c: c.put_parts(offset, parts))
        self.bytes_written += length
        metrics.IMAGEIO_BYTES.labels("written").inc(length)

    async def flush(self) -> None:
        await self._run("flush", lambda c: c.flush())
