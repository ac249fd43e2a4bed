"""Backup policies (olvm_backup/policy): list, show with what they select now, create, edit, delete, run now.
The same data functions as `olvm-backup policy` (cli/policies.py); changes are published on policy.events with
`api:<user>` as the actor. Changing a policy needs the admin role; running one is a backup (operator)."""
from __future__ import annotations

import contextlib
from datetime import datetime, timezone

from aiohttp import web

from olvm_backup.cli.policies import create_policy, delete_named, edit_policy, holds_now, next_runs, request_run
from olvm_backup.policy.model import policy_to_doc
from olvm_backup.policy.selection import evaluate
from olvm_backup.policy.store import find_policy, get_policy, list_policies

from .context import CONTEXT, ApiContext
from .errors import ApiError, bad_input, conflict
from .inputs import field, json_body, unknown_fields
from .jobs import who
from .routing import ADMIN, Route
from .vms import engine_vms

DOCUMENT = {"type": "object", "description": "the policy document, as the YAML of `olvm-backup policy create` "
            "(README \"Policies\"): name, kind, selection, assignment, vms, strategy, schedules, retention...",
            "additionalProperties": True}
RUN = {"type": "object", "properties": {"mode": {"type": "string", "enum": ["auto", "full", "incremental"]}}}


def _runs(policy) -> list[dict]:
    now = datetime.now(timezone.utc)
    return [{"schedule": name, "next": local.isoformat(), "next_utc": utc.isoformat()}
            for name, local, utc in next_runs(policy, now)]


def _summary(policy) -> dict:
    doc = policy_to_doc(policy)
    doc.pop("v", None)
    return {**doc, "next_runs": _runs(policy)}


def _bus(ctx: ApiContext):
    return lambda: contextlib.nullcontext(ctx.bus)


async def policies(request: web.Request) -> web.Response:
    problems: list = []
    found = await list_policies(request.app[CONTEXT].store, problems)
    return web.json_response({"policies": [_summary(p) for p in found], "problems": [str(p) for p in problems]})


async def policy(request: web.Request) -> web.Response:
    """The policy, and the VMs it selects now when an engine answers."""
    ctx: ApiContext = request.app[CONTEXT]
    name = request.match_info["name"]
    found = await list_policies(ctx.store)
    p = await get_policy(ctx.store, name)
    out = _summary(p)
    if ctx.engine is not None:
        result = evaluate([o for o in found if o.name != name] + [p], await engine_vms(ctx))[name]
        explicit = {vm.vm_id for vm in result.explicit}
        out["selects"] = {
            "holds": [{"id": vm.vm_id, "name": vm.name, "cluster": vm.cluster, "tags": sorted(vm.tags),
                       "how": "explicit" if vm.vm_id in explicit else "assigned"} for vm in result.holds],
            "joins": [vm.vm_id for vm in result.joined], "leaves": list(result.left),
            "missing": list(result.missing), "conflicts": [c.message() for c in result.conflicts]}
    return web.json_response(out)


async def create(request: web.Request) -> web.Response:
    ctx: ApiContext = request.app[CONTEXT]
    doc = await json_body(request)
    name = field(doc, "name", str)
    if await find_policy(ctx.store, name) is not None:
        raise conflict("name", f"name: a policy named {name!r} exists already (PUT /api/policies/{name} changes it)")
    created = await create_policy(ctx.store, _bus(ctx), name, doc, who(request))
    return web.json_response(_summary(created), status=201)


async def edit(request: web.Request) -> web.Response:
    ctx: ApiContext = request.app[CONTEXT]
    name = request.match_info["name"]
    doc = await json_body(request)
    if "name" in doc and doc["name"] != name:
        raise bad_input("name", f"the document names {doc['name']!r}, the path {name!r} (a policy is not renamed)")
    event = await edit_policy(ctx.store, _bus(ctx), name, doc, who(request))
    changed = [] if event is None else event.detail.get("fields", [])
    return web.json_response({**_summary(await get_policy(ctx.store, name)), "changed": changed})


async def delete(request: web.Request) -> web.Response:
    ctx: ApiContext = request.app[CONTEXT]
    name = request.match_info["name"]
    await delete_named(ctx.store, _bus(ctx), name, who(request))
    return web.json_response({"deleted": name})


async def run(request: web.Request) -> web.Response:
    ctx: ApiContext = request.app[CONTEXT]
    name = request.match_info["name"]
    doc = await json_body(request)
    unknown_fields(doc, {"mode"})
    mode = field(doc, "mode", str, None, choices=("auto", "full", "incremental"))
    vms = await engine_vms(ctx) if ctx.settings.engine.url else None
    p, holds = await holds_now(ctx.settings, ctx.store, name, vms)
    if p.kind != "backup":
        raise ApiError(409, f"policy {name} is a {p.kind} policy: run it with `olvm-backup policy run {name}`",
                       "name")
    if not holds:
        raise ApiError(409, f"policy {name} holds no VM: nothing to run", "name")
    requested = await request_run(ctx.bus, p, holds, mode, who(request))
    for vm, rid in requested:
        ctx.jobs.asked("backup", rid, {"vm": vm.vm_id, "policy": name, "mode": mode or "auto"})
    return web.json_response({"policy": name, "requested": [
        {"vm": vm.name, "vm_id": vm.vm_id, "request_id": rid, "events": f"/api/jobs/{rid}/events"}
        for vm, rid in requested]}, status=202)


ROUTES_POLICIES = [
    Route("GET", "/api/policies", policies, "Every policy with its next runs", tag="policies"),
    Route("POST", "/api/policies", create, "Create a policy from its document", role=ADMIN, tag="policies",
          body=DOCUMENT, errors=(409,)),
    Route("GET", "/api/policies/{name}", policy, "A policy, the VMs it selects now and its next runs",
          tag="policies", errors=(404,)),
    Route("PUT", "/api/policies/{name}", edit, "Replace a policy by a document (the VMs its selection assigned are "
          "kept unless it says `assigned`)", role=ADMIN, tag="policies", body=DOCUMENT, errors=(404,)),
    Route("DELETE", "/api/policies/{name}", delete, "Delete a policy (its restore points stay)", role=ADMIN,
          tag="policies", errors=(404,)),
    Route("POST", "/api/policies/{name}/run", run, "Back up every VM the policy holds now", tag="policies",
          body=RUN, errors=(404, 409)),
]
