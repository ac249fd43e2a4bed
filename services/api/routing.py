"""The route table: each route once, with what the OpenAPI document says of it (openapi.py) and who may call it
(security.py). Handlers are registered only through `add_routes`, so a route cannot exist undocumented or
unguarded; tests/services/api/test_openapi.py holds the served document to the router.

Pages of the console (`kind="page"`) are routes of the same table: same sessions, same roles, same CSRF rule; an
unauthenticated page request is sent to the login page instead of answered 401, and pages are not in the API's
document.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

OPERATOR, ADMIN = "operator", "admin"  # the roles (olvm_backup/users.py); admin may do all an operator may
PUBLIC = None                          # no login needed: the login itself, the login page


@dataclass(frozen=True)
class Param:
    name: str
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


@dataclass(frozen=True)
class Route:
    method: str
    path: str                      # aiohttp's syntax: /api/restore-points/{backup_id}; {path:.*} for a tail
    handler: Handler
    summary: str
    role: str | None = OPERATOR    # the least role that may call it; PUBLIC: no login
    tag: str = ""
    body: dict[str, Any] | None = None          # JSON schema of the request body
    query: tuple[Param, ...] = ()
    returns: dict[str, Any] | None = None       # JSON schema of a 200's body
    content_type: str = "application/json"      # of a 200's body: text/event-stream, application/octet-stream
    errors: tuple[int, ...] = ()                # the 4xx it may answer besides 401/403
    kind: str = "api"                           # or "page"

    def path_params(self) -> list[str]:
        return [m.split(":")[0] for m in re.findall(r"{([^}]+)}", self.path)]

    def openapi_path(self) -> str:
        return re.sub(r"{([^}:]+)(:[^}]*)?}", r"{\1}", self.path)


def add_routes(app: web.Application, routes: list[Route]) -> None:
    """Register `routes` behind the login and role checks (security.guard), and keep them for the document."""
    from .security import guard

    table: list[Route] = app.setdefault(ROUTES, [])
    for route in routes:
        app.router.add_route(route.method, route.path, guard(route))
        table.append(route)


ROUTES = web.AppKey("routes", list)
