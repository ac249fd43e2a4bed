"""Browsing and downloading the files inside a restore point (olvm_backup/access, as `olvm-backup files ls` and
`cat` read them): straight from the repository, nothing restored or mounted. Paths are `/<disk>/<volume>/<path>`.

The parsers are synchronous: each request opens the restore point in a worker thread (held in use meanwhile, so
prune keeps it), and a download is read there piece by piece, each written to the client before the next is read."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from urllib.parse import quote

from aiohttp import web

from olvm_backup.cli.files import as_json, listing, opened

from .context import CONTEXT
from .errors import bad_input
from .routing import Param, Route
from .security import SESSION

log = logging.getLogger(__name__)

PIECE = 1 << 20
ENTRY = {"type": "object", "properties": {
    "path": {"type": "string"}, "name": {"type": "string"},
    "type": {"type": "string", "description": "disk, volume, dir, file, symlink..."}, "size": {"type": "integer"},
    "mode": {"type": "string", "nullable": True}, "uid": {"type": "integer", "nullable": True},
    "gid": {"type": "integer", "nullable": True}, "mtime": {"type": "number", "nullable": True},
    "target": {"type": "string", "nullable": True}, "note": {"type": "string", "nullable": True}}}
PATH = Param("path", "/<disk>/<volume>/<path in the file system>; / lists the disks", required=False)


def _path(request: web.Request, default: str | None = "/") -> str:
    path = request.query.get("path", default)
    if not path:
        raise bad_input("path", "required: /<disk>/<volume>/<path>")
    if not path.startswith("/"):
        raise bad_input("path", f"must start with '/', not {path!r}")
    return path


def _by(request: web.Request) -> str:
    return f"api:{request[SESSION].user}"


async def ls(request: web.Request) -> web.Response:
    settings = request.app[CONTEXT].settings
    backup_id, path = request.match_info["backup_id"], _path(request)

    def read() -> list[dict]:
        with opened(settings, backup_id, by=_by(request)) as files:
            return [as_json(item) for item in listing(files, path)]

    return web.json_response(await asyncio.to_thread(read))


async def download(request: web.Request) -> web.StreamResponse:
    from olvm_backup.access.filesystems import DIR
    from olvm_backup.access.tree import FilesError

    settings = request.app[CONTEXT].settings
    backup_id, path = request.match_info["backup_id"], _path(request, None)
    loop = asyncio.get_running_loop()
    response = web.StreamResponse()
    started = asyncio.Event()

    def send() -> None:
        with opened(settings, backup_id, by=_by(request)) as files:
            item = files.lookup(path, follow=True)
            if item.kind == DIR or item.kind in ("disk", "volume"):
                raise FilesError(f"is a {item.kind}, not a file (list it with .../files?path=)", path=path)
            name = item.node.name or "file"
            response.content_type = "application/octet-stream"
            response.content_length = item.node.size
            response.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(name, safe='')}"
            asyncio.run_coroutine_threadsafe(response.prepare(request), loop).result()
            loop.call_soon_threadsafe(started.set)
            with files.open(item) as f:
                while piece := f.read(PIECE):
                    asyncio.run_coroutine_threadsafe(response.write(piece), loop).result()

    worker = asyncio.ensure_future(asyncio.to_thread(send))
    try:
        await worker
    except Exception as e:
        if not started.is_set():
            raise  # nothing sent yet: the error is the answer (json_errors)
        # Half sent (a damaged chunk, the client gone): cut the connection, so the client sees a short body against
        # its Content-Length, never a file that looks whole.
        log.warning("download of %s from restore point %s broke off: %s", path, backup_id, e)
        if request.transport is not None:
            request.transport.close()
        return response
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):  # the thread ends at its next write to the closed connection
            await worker
        raise
    await response.write_eof()
    return response


ROUTES_FILES = [
    Route("GET", "/api/restore-points/{backup_id}/files", ls, "List a directory inside a restore point (the disks "
          "at /, their volumes at /<disk>), or show one entry", tag="files", query=(PATH,),
          returns={"type": "array", "items": ENTRY}, errors=(400, 404)),
    Route("GET", "/api/restore-points/{backup_id}/download", download, "Download one file from inside a restore "
          "point", tag="files", content_type="application/octet-stream", errors=(400, 404),
          query=(Param("path", "/<disk>/<volume>/<path> of a file", required=True),)),
]
