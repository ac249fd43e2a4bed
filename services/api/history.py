"""The audit trail (olvm_backup/audit), as `olvm-backup history --json` shows it."""
from __future__ import annotations

import time

from aiohttp import web

from olvm_backup.audit.history import rows
from olvm_backup.audit.reading import read_trail
from olvm_backup.audit.trail import parse_since

from .context import CONTEXT
from .errors import bad_input
from .routing import Param, Route

ROW = {"type": "object", "properties": {k: {"type": "string"} for k in (
    "what", "vm", "policy", "by", "outcome", "message", "request_id", "backup_id", "topic")} | {
    "at": {"type": "number"}}}


async def history(request: web.Request) -> web.Response:
    q = request.query
    now = time.time()
    start = None
    if q.get("since"):
        try:
            start = now - parse_since(q["since"])
        except Exception as e:
            raise bad_input("since", str(e)) from None
    try:
        limit = int(q.get("limit", "500"))
    except ValueError:
        raise bad_input("limit", f"must be a whole number, not {q['limit']!r}") from None
    entries = await read_trail(request.app[CONTEXT].store, start, now)
    shown = rows(entries, vm=q.get("vm") or None, policy=q.get("policy") or None, since=start)
    return web.json_response([r.to_json() for r in shown[:max(0, limit)]])


ROUTES_HISTORY = [
    Route("GET", "/api/history", history, "What was requested, run, restored and changed, newest first, with who "
          "or what asked", tag="history", returns={"type": "array", "items": ROW}, errors=(400,),
          query=(Param("vm", "only this VM (name or id)"), Param("policy", "only this policy"),
                 Param("since", "only the last AGE: 30m, 12h, 7d, 2w"),
                 Param("limit", "at most this many rows (default 500)", {"type": "integer"}))),
]
