"""An asyncio client for the ovirt-imageio data plane (host daemon, with the manager's proxy as fallback).

Only the control requests the pipeline needs: extents, and a restore's final
flush. Data goes through imageio_blocking.py. TLS is verified against the
engine's CA.
"""
from __future__ import annotations

import json
import ssl
from typing import Any

import aiohttp

from .errors import BackupError, RetriableError
from .planning import Extent
from .retry import IMAGEIO, retry


class ImageioError(BackupError):
    template = "imageio {url}: {reason}"


class ImageioUnavailable(RetriableError):
    template = "imageio {url}: {reason}"


class TicketGone(ImageioError):
    """imageio answered 403: the transfer's ticket was finalized or cancelled, so nobody can read it any more."""


def answer_error(what: str, status: int, body: bytes, url: str) -> ImageioError | ImageioUnavailable:
    """The error for an imageio answer that is not a success: retriable for a server error, TicketGone for 403."""
    kind = ImageioUnavailable if status >= 500 else TicketGone if status == 403 else ImageioError
    return kind(f"{what} answered {status}: {body[:300].decode(errors='replace')}", url=url)


def ssl_context(ca_file: str, insecure: bool) -> ssl.SSLContext | bool:
    if insecure:
        return False
    return ssl.create_default_context(cafile=ca_file or None)


def new_session(ca_file: str, insecure: bool, *, limit: int = 16, keep_alive: bool = True) -> aiohttp.ClientSession:
    """`keep_alive=False` closes each connection after its request: an idle imageio connection still holds one
    of the ticket's few NBD connections (see `ImageioClient.max_readers`)."""
    connector = aiohttp.TCPConnector(ssl=ssl_context(ca_file, insecure), limit=limit, force_close=not keep_alive)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False)


class ImageioClient:
    """One transfer (ticket). Tries `transfer_url` (the host), and the proxy when the host cannot be reached."""

    def __init__(self, session: aiohttp.ClientSession, transfer_url: str, proxy_url: str | None = None) -> None:
        self._session = session
        self._urls = [u for u in (transfer_url, proxy_url) if u]
        self.url = self._urls[0]

    async def _request(self, method: str, suffix: str = "", *, headers: dict | None = None,
                       data: Any = None) -> bytes:
        async def once() -> bytes:
            last: Exception | None = None
            for url in [self.url] + [u for u in self._urls if u != self.url]:
                try:
                    async with self._session.request(method, url + suffix, headers=headers, data=data) as resp:
                        body = await resp.read()
                        if resp.status != 200:
                            raise answer_error(f"{method} {suffix or '/'}", resp.status, body, url)
                        self.url = url
                        return body
                except (aiohttp.ClientConnectionError, OSError) as e:
                    last = ImageioUnavailable(f"{type(e).__name__}: {e}", url=url)
            assert last is not None
            raise last

        return await retry(once, what=f"imageio {method}", policy=IMAGEIO)

    async def max_readers(self) -> int:
        """How many connections may read this ticket at once (imageio's OPTIONS; 1 from a server that does not
        say, as imageio's own client assumes). Each connection holds one connection to the host's NBD server,
        which accepts no more than that: one beyond waits, without an error, until another closes."""
        body = await self._request("OPTIONS")
        try:
            return max(1, int(json.loads(body).get("max_readers", 1)))
        except (ValueError, TypeError, AttributeError) as e:
            raise ImageioError(f"OPTIONS answer is not the expected JSON ({e})", url=self.url) from None

    async def extents(self, context: str = "zero") -> list[dict[str, Any]]:
        body = await self._request("GET", f"/extents?context={context}")
        try:
            return json.loads(body)
        except ValueError as e:
            raise ImageioError(f"extents answer is not JSON ({e})", url=self.url) from None

    async def data_extents(self, incremental: bool) -> list[Extent]:
        """What must be read: for a full, every non-zero extent; for an incremental, what is dirty.

        Extents that must be recorded as zero (holes in a full; dirty zeroed ranges in an incremental) come
        back with data=False; clean ranges of an incremental are left out.
        """
        if not incremental:
            return [Extent(e["start"], e["length"], not e["zero"]) for e in await self.extents("zero")]
        return [Extent(e["start"], e["length"], not e.get("zero", False))
                for e in await self.extents("dirty") if e["dirty"]]

    async def flush(self) -> None:
        await self._request("PATCH", data=json.dumps({"op": "flush"}), headers={"Content-Type": "application/json"})
