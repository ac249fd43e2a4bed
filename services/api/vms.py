"""VMs as the engine lists them, with their protection state (protection.py)."""
from __future__ import annotations

import time

from aiohttp import web

from olvm_backup.audit.history import rows
from olvm_backup.audit.reading import read_trail
from olvm_backup.audit.trail import parse_since
from olvm_backup.engine.inventory import list_vms
from olvm_backup.policy.selection import VmView
from olvm_backup.policy.store import list_policies
from olvm_backup.repository import catalog

from .context import CONTEXT, ApiContext
from .errors import ApiError, bad_input, not_found
from .protection import protection
from .routing import Param, Route

HISTORY_WINDOW = "30d"  # how far back a VM's last result is looked for by default

VM = {"type": "object", "properties": {
    "id": {"type": "string"}, "name": {"type": "string"}, "cluster": {"type": "string", "nullable": True},
    "tags": {"type": "array", "items": {"type": "string"}},
    "policy": {"type": "string", "nullable": True, "description": "the backup policy that holds it"},
    "snapshot_policy": {"type": "string", "nullable": True},
    "protected": {"type": "boolean", "description": "a backup policy holds it, or it has a restore point"},
    "last_restore_point": {"type": "object", "nullable": True},
    "last_result": {"type": "object", "nullable": True, "description": "how its last backup ended"}}}


async def engine_vms(ctx: ApiContext) -> list[VmView]:
    if ctx.engine is None:
        raise ApiError(503, "no engine configured (OLVM_ENGINE_URL)", "engine")
    return await list_vms(ctx.engine)


async def find_vm(ctx: ApiContext, vm: str, field: str = "vm") -> VmView:
    """The engine's VM named or numbered `vm`: 404 naming `field` when it has none."""
    for view in await engine_vms(ctx):
        if vm in (view.vm_id, view.name):
            return view
    raise not_found(field, f"{field}: the engine has no VM named or with id {vm!r}")


async def vms(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    window = request.query.get("since", HISTORY_WINDOW)
    try:
        start = time.time() - parse_since(window)
    except Exception as e:
        raise bad_input("since", str(e)) from None
    inventory = await engine_vms(ctx)
    policies = await list_policies(ctx.store)
    manifests = await catalog.list_manifests(ctx.store)
    history = rows(await read_trail(ctx.store, start), since=start)
    return web.json_response(protection(inventory, policies, manifests, history))


async def vm(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    view = await find_vm(ctx, request.match_info["vm"])
    policies = await list_policies(ctx.store)
    manifests = await catalog.list_manifests(ctx.store, view.vm_id)
    start = time.time() - parse_since(HISTORY_WINDOW)
    history = rows(await read_trail(ctx.store, start), vm=view.vm_id, since=start)
    return web.json_response(protection([view], policies, manifests, history)[0])


ROUTES_VMS = [
    Route("GET", "/api/vms", vms, "Every VM of the engine with its protection state: policy, newest restore point, "
          "how its last backup ended", tag="vms", returns={"type": "array", "items": VM}, errors=(400, 503),
          query=(Param("since", "how far back to look for the last result: 30m, 12h, 7d (default 30d)"),)),
    Route("GET", "/api/vms/{vm}", vm, "One VM (name or id) with its protection state", tag="vms", returns=VM,
          errors=(404, 503)),
]
