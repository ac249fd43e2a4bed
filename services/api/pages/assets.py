"""The console's scripts and style sheet (static/), served by exact name from a list made at import: no path from
the request ever reaches the file system. Public (the login page needs them); nothing in them is secret."""
from __future__ import annotations

from pathlib import Path

from aiohttp import web

from ..routing import PUBLIC, Route

STATIC = Path(__file__).with_name("static")
TYPES = {".js": "text/javascript", ".css": "text/css"}
FILES = {p.name: p for p in STATIC.iterdir() if p.suffix in TYPES}


async def asset(request: web.Request) -> web.Response:
    path = FILES.get(request.match_info["name"])
    if path is None:
        raise web.HTTPNotFound(text="no such file\n")
    return web.Response(body=path.read_bytes(), content_type=TYPES[path.suffix], charset="utf-8")


ROUTES_STATIC = [
    Route("GET", "/static/{name}", asset, "The console's scripts and style sheet", role=PUBLIC, kind="page",
          tag="console", content_type="text/javascript"),
]
