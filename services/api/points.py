"""Restore points: the catalog in the object store, as `olvm-backup backups --json` shows it."""
from __future__ import annotations

from aiohttp import web

from olvm_backup.cli.listing import point_doc
from olvm_backup.repository import catalog

from .context import CONTEXT
from .routing import Param, Route

POINT = {"type": "object", "properties": {
    "backup_id": {"type": "string"}, "vm_id": {"type": "string"}, "vm_name": {"type": "string"},
    "mode": {"type": "string"}, "completed_at": {"type": "number"}, "strategy": {"type": "string"},
    "consistency": {"type": "string", "nullable": True}, "stored_bytes": {"type": "integer"},
    "size": {"type": "integer", "description": "the disks' sizes added up"},
    "disks": {"type": "array", "items": {"type": "object"}}}}


def _doc(m) -> dict:
    return {**point_doc(m), "size": sum(d.size for d in m.disks)}


async def points(request: web.Request) -> web.Response:
    manifests = await catalog.list_manifests(request.app[CONTEXT].store)
    vm = request.query.get("vm")
    if vm:
        manifests = [m for m in manifests if vm in (m.vm_id, m.vm_name)]
    return web.json_response([_doc(m) for m in reversed(manifests)])


async def point(request: web.Request) -> web.Response:
    m = await catalog.find(request.app[CONTEXT].store, request.match_info["backup_id"])
    return web.json_response(_doc(m))


ROUTES_POINTS = [
    Route("GET", "/api/restore-points", points, "Restore points, newest first: disks, size, strategy, consistency",
          tag="restore points", returns={"type": "array", "items": POINT},
          query=(Param("vm", "only this VM (name or id)"),)),
    Route("GET", "/api/restore-points/{backup_id}", point, "One restore point", tag="restore points",
          returns=POINT, errors=(404,)),
]
