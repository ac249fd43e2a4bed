"""`history`: what was requested, started, completed, failed, restored and changed, newest first, from the audit
trail in the object store (olvm_backup/audit): no broker needed, and it outlives the broker's topics."""
from __future__ import annotations

import json
import sys
import time

from ..audit.history import Row, rows
from ..audit.reading import read_trail
from ..audit.trail import parse_since
from ..config import Settings
from ..repository.sealedstore import open_sealed


async def show_history(settings: Settings, *, vm: str | None = None, policy: str | None = None,
                       since: str | None = None, as_json: bool = False, out=sys.stdout) -> int:
    now = time.time()
    start = now - parse_since(since) if since else None
    unreadable: list[str] = []
    async with open_sealed(settings) as (store, _):
        entries = await read_trail(store, start, now, unreadable)
    shown = rows(entries, vm=vm, policy=policy, since=start)
    if unreadable:
        print(f"olvm-backup: {len(unreadable)} audit object(s) written by another format left out: "
              f"{', '.join(unreadable[:5])}", file=sys.stderr)
    if as_json:
        print(json.dumps([r.to_json() for r in shown], indent=1), file=out)
        return 0
    if not shown:
        print("nothing in the audit trail" + (" that matches" if vm or policy or since else ""), file=sys.stderr)
        return 0
    print(_table(shown), file=out)
    return 0


def _table(shown: list[Row]) -> str:
    lines = [f"{'time (UTC)':<19}  {'what':<18} {'vm':<16} {'policy':<12} {'by':<24} {'outcome':<9}  detail"]
    for r in shown:
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.at))
        detail = r.message if not r.backup_id or r.backup_id in r.message else f"{r.backup_id}: {r.message}"
        lines.append(f"{at:<19}  {r.what:<18} {_cut(r.vm, 16):<16} {_cut(r.policy, 12):<12} {_cut(r.by, 24):<24} "
                     f"{r.outcome or '-':<9}  {detail}")
    return "\n".join(lines)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"
