"""Where a restore may go: the engine's clusters and data storage domains (the restore dialog's choices)."""
from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from olvm_backup.engine.targets import restore_targets

from .context import CONTEXT
from .errors import ApiError
from .routing import Route

TARGETS = {"type": "object", "properties": {
    "clusters": {"type": "array", "items": {"type": "object", "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "data_center_id": {"type": "string", "nullable": True}}}},
    "storage_domains": {"type": "array", "items": {"type": "object", "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "status": {"type": "string", "nullable": True},
        "available": {"type": "integer", "nullable": True, "description": "free bytes"},
        "data_center_ids": {"type": "array", "items": {"type": "string"}}}}}}}


async def targets(request: web.Request) -> web.Response:
    engine = request.app[CONTEXT].engine
    if engine is None:
        raise ApiError(503, "no engine configured (OLVM_ENGINE_URL)", "engine")
    clusters, domains = await restore_targets(engine)
    return web.json_response({"clusters": [asdict(c) for c in clusters],
                              "storage_domains": [asdict(d) for d in domains]})


ROUTES_TARGETS = [
    Route("GET", "/api/restore-targets", targets, "The engine's clusters and data storage domains: where a restore "
          "may put a VM and its disks (the restore's cluster and storage_domain)", tag="jobs", returns=TARGETS,
          errors=(503,)),
]
