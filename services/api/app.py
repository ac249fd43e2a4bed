"""The API's application: the route table (each area's ROUTES_* list), its guard (security.py), JSON errors,
security headers, and the connections it holds while it runs (context.connect).

Adding to it:
- API routes: a module with handlers and a `ROUTES_<AREA>` list of routing.Route, added to `api_routes()` below;
  the OpenAPI document picks them up (and tests/services/api/test_openapi.py checks it does).
- Console pages: `services/api/pages/` (its `page_routes()`: Routes with kind="page", the same guard: sessions,
  roles, CSRF; static files under /static) is added by `add_pages` when it exists.
- Metrics: `add_metrics` counts and times every request; the metrics are served on OLVM_METRICS_PORT like every
  service's (runtime.py), outside the API's port and its guard.
"""
from __future__ import annotations

from aiohttp import web

from olvm_backup.config import Settings

from .context import CONTEXT, ApiContext, connect
from .errors import json_errors
from .routing import Route, add_routes
from .security import security_headers


def api_routes() -> list[Route]:
    from .auth import ROUTES_AUTH
    from .files import ROUTES_FILES
    from .history import ROUTES_HISTORY
    from .jobs import ROUTES_JOBS
    from .points import ROUTES_POINTS
    from .policies import ROUTES_POLICIES
    from .snapshots import ROUTES_SNAPSHOTS
    from .targets import ROUTES_TARGETS
    from .vms import ROUTES_VMS

    return [*ROUTES_AUTH, *ROUTES_VMS, *ROUTES_POINTS, *ROUTES_JOBS, *ROUTES_POLICIES, *ROUTES_FILES,
            *ROUTES_HISTORY, *ROUTES_TARGETS, *ROUTES_SNAPSHOTS]


def add_pages(app: web.Application) -> None:
    """The console's pages, when that part is installed (services/api/pages)."""
    try:
        from .pages import page_routes  # type: ignore[import-not-found]
    except ImportError:
        return
    add_routes(app, page_routes())


def add_metrics(app: web.Application) -> None:
    """Requests counted and timed (services/api/metrics.py); the process's /metrics is served on
    OLVM_METRICS_PORT, as every service's is."""
    from .metrics import add_request_metrics

    add_request_metrics(app)


def make_app(settings: Settings, *, context: ApiContext | None = None, connected: bool = True) -> web.Application:
    """`connected=False`: no repository, broker or engine opened (for the route table and document alone)."""
    app = web.Application(middlewares=[json_errors], client_max_size=1 << 20)
    app[CONTEXT] = context or ApiContext.for_settings(settings)
    app.on_response_prepare.append(security_headers)
    add_routes(app, api_routes())
    add_pages(app)
    add_metrics(app)
    if connected:
        app.cleanup_ctx.append(connect)
    return app
