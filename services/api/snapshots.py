"""A VM's snapshots on the engine (`olvm-backup snapshots VM list|create|remove`, the same data functions in
cli/snapshots.py): which are ours, taking one (recorded in the repository as ours), removing one of ours (and, for
an admin, `force`: one olvm-backup did not make)."""
from __future__ import annotations

import logging

from aiohttp import web

from olvm_backup.cli.snapshots import remove_snapshot, snapshot_rows, take_snapshot
from olvm_backup.snapshots.steps import SnapshotError

from .context import CONTEXT, ApiContext
from .errors import ApiError
from .inputs import field, json_body, unknown_fields
from .jobs import who
from .routing import ADMIN, Param, Route
from .security import SESSION
from .vms import engine_vms, find_vm

log = logging.getLogger(__name__)

SNAPSHOT = {"type": "object", "properties": {
    "snapshot_id": {"type": "string"}, "date": {"type": "number"}, "description": {"type": "string"},
    "status": {"type": "string"}, "ours": {"type": "boolean"},
    "owner": {"type": "string", "description": "who made it: a person, a policy, `backup` (a snapshot backup's kept "
                                               "one) or `not ours`"},
    "disks": {"type": "array", "items": {"type": "string"}}}}
CREATE = {"type": "object", "properties": {
    "description": {"type": "string", "description": "words added to the snapshot's description"},
    "quiesce": {"type": "boolean", "default": False,
                "description": "require the guest's file systems frozen when a guest agent runs"}}}


async def _say(text: str) -> None:
    log.info("%s", text)


def _refused(e: SnapshotError) -> ApiError:
    return ApiError(409, str(e), "snapshot")


async def _vm(request: web.Request) -> str:
    ctx: ApiContext = request.app[CONTEXT]
    await engine_vms(ctx)  # 503 without an engine
    return (await find_vm(ctx, request.match_info["vm"])).vm_id


async def snapshots(request: web.Request) -> web.Response:
    ctx: ApiContext = request.app[CONTEXT]
    vm, rows = await snapshot_rows(ctx.engine, ctx.store, await _vm(request))
    return web.json_response({"vm": vm.name, "vm_id": vm.vm_id, "status": vm.status, "snapshots": rows})


async def create(request: web.Request) -> web.Response:
    ctx: ApiContext = request.app[CONTEXT]
    doc = await json_body(request)
    unknown_fields(doc, set(CREATE["properties"]))
    description = field(doc, "description", str, "")
    quiesce = field(doc, "quiesce", bool, False)
    vm_id = await _vm(request)
    try:
        vm, taken = await take_snapshot(ctx.engine, ctx.store, vm_id, description, quiesce, who(request), say=_say)
    except SnapshotError as e:
        raise _refused(e) from None
    s = taken.snapshot
    return web.json_response({"vm": vm.name, "snapshot_id": s.snapshot_id, "description": s.description,
                              "consistency": taken.consistency}, status=201)


async def remove(request: web.Request) -> web.Response:
    ctx: ApiContext = request.app[CONTEXT]
    force = request.query.get("force", "false").lower() in ("1", "true", "yes")
    if force and request[SESSION].role != ADMIN:
        raise ApiError(403, "removing a snapshot olvm-backup did not make (force) needs the admin role", "force")
    vm_id = await _vm(request)
    try:
        vm, snap = await remove_snapshot(ctx.engine, ctx.store, vm_id, request.match_info["snapshot"], force,
                                         say=_say)
    except SnapshotError as e:
        raise _refused(e) from None
    return web.json_response({"vm": vm.name, "removed": snap.snapshot_id})


ROUTES_SNAPSHOTS = [
    Route("GET", "/api/vms/{vm}/snapshots", snapshots, "A VM's snapshots on the engine, oldest first, with which are "
          "ours", tag="snapshots", returns={"type": "object", "properties": {
              "snapshots": {"type": "array", "items": SNAPSHOT}}}, errors=(404, 503)),
    Route("POST", "/api/vms/{vm}/snapshots", create, "Take a snapshot of the VM (ours: recorded in the repository); "
          "answers once the engine has it", tag="snapshots", body=CREATE, errors=(404, 409, 503)),
    Route("DELETE", "/api/vms/{vm}/snapshots/{snapshot}", remove, "Remove one of our snapshots (by id or exact "
          "description) and wait until its layer is merged; force (admin): one olvm-backup did not make",
          tag="snapshots", errors=(404, 409, 503),
          query=(Param("force", "true: remove it even though olvm-backup did not make it (admin only)",
                       {"type": "boolean"}),)),
]
