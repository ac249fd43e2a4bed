"""Jobs: a backup or a restore asked for with every option the CLI has (cli/jobs.py builds the same requests),
and its progress as a stream of the events the CLI follows (jobwatch.py)."""
from __future__ import annotations

import json
import time

from aiohttp import web

from schemas.topics import BACKUP_REQUESTS, RESTORE_REQUESTS

from olvm_backup.cli.jobs import new_backup_request, new_restore_request
from olvm_backup.repository import catalog

from .context import CONTEXT, ApiContext
from .errors import bad_input, conflict, not_found
from .jobwatch import FINAL
from .inputs import field, json_body, strings, unknown_fields
from .routing import Route
from .security import SESSION, still_logged_in
from .vms import engine_vms, find_vm

KEEPALIVE = 15.0  # seconds between two comments on a quiet stream (proxies close idle connections)

BACKUP = {"type": "object", "required": ["vm"], "properties": {
    "vm": {"type": "string", "description": "VM name or id"},
    "mode": {"type": "string", "enum": ["auto", "full", "incremental"], "default": "auto"},
    "strategy": {"type": "string", "enum": ["cbt", "snapshot"], "default": "cbt"},
    "exclude_disks": {"type": "array", "items": {"type": "string"}, "description": "disk names or ids to skip"},
    "quiesce": {"type": "boolean", "default": True,
                "description": "require the guest's file systems frozen when a guest agent runs"}}}
RESTORE = {"type": "object", "required": ["restore_point"], "properties": {
    "restore_point": {"type": "string"},
    "name": {"type": "string", "description": "the new VM's name (default <original>-restored)"},
    "replace": {"type": "boolean", "description": "replace the original VM, keeping its id"},
    "target_vm": {"type": "string", "description": "restore the disks into this existing VM"},
    "cluster": {"type": "string"}, "storage_domain": {"type": "string"},
    "disks": {"type": "array", "items": {"type": "string"}, "description": "only these disks (names or ids)"},
    "power_on": {"type": "boolean"}, "keep_failed": {"type": "boolean"}}}
ACCEPTED = {"type": "object", "properties": {"request_id": {"type": "string"}, "events": {"type": "string"}}}


def who(request: web.Request) -> str:
    return f"api:{request[SESSION].user}"


async def _publish(request: web.Request, kind: str, topic, record, key: str) -> web.Response:
    ctx: ApiContext = request.app[CONTEXT]
    ctx.jobs.asked(kind, record.request_id, record.model_dump(mode="json"))  # before: no event can come first
    await ctx.bus.publish(topic, record, key=key)
    return web.json_response({"request_id": record.request_id, "job": kind,
                              "events": f"/api/jobs/{record.request_id}/events"}, status=202)


async def start_backup(request: web.Request) -> web.Response:
    doc = await json_body(request)
    unknown_fields(doc, set(BACKUP["properties"]))
    vm = field(doc, "vm", str)
    mode = field(doc, "mode", str, "auto", choices=("auto", "full", "incremental"))
    strategy = field(doc, "strategy", str, "cbt", choices=("cbt", "snapshot"))
    exclude = strings(doc, "exclude_disks")
    quiesce = field(doc, "quiesce", bool, True)
    view = await find_vm(request.app[CONTEXT], vm)
    record = new_backup_request(vm, mode, exclude, quiesce, strategy, requested_by=who(request))
    return await _publish(request, "backup", BACKUP_REQUESTS, record, view.vm_id)  # keyed by id, as a policy's are


async def start_restore(request: web.Request) -> web.Response:
    ctx: ApiContext = request.app[CONTEXT]
    doc = await json_body(request)
    unknown_fields(doc, set(RESTORE["properties"]))
    point = field(doc, "restore_point", str)
    name = field(doc, "name", str, None)
    replace = field(doc, "replace", bool, False)
    target_vm = field(doc, "target_vm", str, None)
    if sum((name is not None, replace, target_vm is not None)) > 1:
        raise bad_input("name" if name is not None else "replace", "name, replace and target_vm exclude each other")
    cluster = field(doc, "cluster", str, None)
    storage_domain = field(doc, "storage_domain", str, None)
    disks = strings(doc, "disks")
    power_on = field(doc, "power_on", bool, False)
    keep_failed = field(doc, "keep_failed", bool, False)
    manifest = await catalog.find(ctx.store, point)  # 404 naming restore_point when it is not there
    known = {d.name for d in manifest.disks} | {d.disk_id for d in manifest.disks}
    for i, disk in enumerate(disks):
        if disk not in known:
            raise not_found(f"disks[{i}]", f"restore point {point} has no disk {disk!r}")
    if target_vm is not None:
        await find_vm(ctx, target_vm, "target_vm")
    elif not replace and ctx.engine is not None:
        new_name = name or f"{manifest.vm_name}-restored"
        if any(v.name == new_name for v in await engine_vms(ctx)):
            raise conflict("name", f"name: the engine has a VM named {new_name!r} already")
    record = new_restore_request(point, name=name, replace=replace, cluster=cluster, storage_domain=storage_domain,
                                 disks=disks, target_vm=target_vm, power_on=power_on, keep_failed=keep_failed,
                                 requested_by=who(request))
    return await _publish(request, "restore", RESTORE_REQUESTS, record, point)


def _job(request: web.Request):
    rid = request.match_info["request_id"]
    job = request.app[CONTEXT].jobs.job(rid)
    if job is None:
        raise not_found("request_id", f"no job {rid} seen since the API started (GET /api/history has older ones)")
    return job


async def jobs(request: web.Request) -> web.Response:
    return web.json_response([j.summary() for j in request.app[CONTEXT].jobs.recent()])


async def job(request: web.Request) -> web.Response:
    j = _job(request)
    return web.json_response({**j.summary(), "events": j.events})


async def job_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: each job event as `id: N` and `data: {json}`, from the first (or after Last-Event-ID)
    to the final one, then the stream ends."""
    j = _job(request)
    try:
        start = int(request.headers.get("Last-Event-ID", "-1")) + 1
    except ValueError:
        raise bad_input("Last-Event-ID", "must be a whole number") from None
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
    await response.prepare(request)
    watch = request.app[CONTEXT].jobs
    i = max(0, start)
    while True:
        while i < len(j.events):
            event = j.events[i]
            await response.write(f"id: {i}\nevent: {event['kind']}\ndata: {json.dumps(event)}\n\n".encode())
            i += 1
            if event["kind"] in FINAL:
                break
        # Also a client resuming (Last-Event-ID) after the end: nothing more will come. A login that expired, was
        # logged out or whose user changed meanwhile ends the stream too (the guard looked only at its start; a
        # job may run for hours): the client's next request is then a 401.
        if j.ended or not still_logged_in(request):
            await response.write_eof()
            return response
        left = request[SESSION].expires_at - time.time()  # woken at the expiry, not a keep-alive after it
        if not await watch.wait(j, i, max(0.0, min(KEEPALIVE, left))) and left > KEEPALIVE:
            await response.write(b": still running\n\n")


ROUTES_JOBS = [
    Route("POST", "/api/backups", start_backup, "Back a VM up (as `olvm-backup backup`): answers the request id at "
          "once; follow it at /api/jobs/{request_id}/events", tag="jobs", body=BACKUP, returns=ACCEPTED,
          errors=(404, 503)),
    Route("POST", "/api/restores", start_restore, "Restore a restore point (as `olvm-backup restore`): a new VM, "
          "the original replaced, or disks into another VM", tag="jobs", body=RESTORE, returns=ACCEPTED,
          errors=(404, 409, 503)),
    Route("GET", "/api/jobs", jobs, "Backups and restores seen since the API started, newest first", tag="jobs",
          returns={"type": "array", "items": {"type": "object"}}),
    Route("GET", "/api/jobs/{request_id}", job, "One job: its state and every event so far", tag="jobs",
          errors=(404,)),
    Route("GET", "/api/jobs/{request_id}/events", job_events, "A job's events as server-sent events, the first to "
          "the final one (completed, failed or cancelled): the progress the CLI shows", tag="jobs",
          content_type="text/event-stream", errors=(404,)),
]
