"""The API's own metrics: every request counted by method, route template and status, and timed, in the
outermost middleware, so refusals by the guard (401, 403) and errors answered as JSON count as what the caller
got. The process's /metrics is served as every service's is (runtime.py, OLVM_METRICS_PORT), apart from the API's
port and its logins."""
from __future__ import annotations

import time

from aiohttp import web

from olvm_backup import metrics


METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_of(request: web.Request) -> str:
    """The request's method, or "other": aiohttp hands on dozens more (WebDAV's, PURGE...; any token at all with
    its pure-Python parser), and a label for each would let anyone, no login needed, multiply the series."""
    return request.method if request.method in METHODS else "other"


def route_of(request: web.Request) -> str:
    """The matched route's template (/api/vms/{vm}), or "unmatched": bounded, whatever paths callers try."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def count_requests(request: web.Request, handler) -> web.StreamResponse:
    started = time.monotonic()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as e:
        status = e.status
        raise
    finally:
        route = route_of(request)
        metrics.API_REQUESTS.labels(method_of(request), route, str(status)).inc()
        metrics.API_SECONDS.labels(route).observe(time.monotonic() - started)


def add_request_metrics(app: web.Application) -> None:
    app.middlewares.insert(0, count_requests)  # outermost: it sees the answer the other middlewares made
