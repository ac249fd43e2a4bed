"""What `olvm-backup history` shows (pure): the trail's entries as rows, newest first, each with what happened, the
VM, the policy, who or what asked and how the request ended.

A request's record says who asked (`requested_by`) and for which policy; its events say only the request id, so
each event row takes those from its request. A restore's VM is the one its restore point is of, as the trail's
backup events name it, or the id its events report.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from .trail import FINAL, Entry

_STEP = {"requested": 0, "accepted": 1, "started": 2, "stored": 3, "completed": 4, "failed": 4, "cancelled": 4}


@dataclass
class Row:
    at: float
    what: str                     # "backup requested", "restore completed", "policy updated", ...
    vm: str = ""
    policy: str = ""
    by: str = ""                  # who or what asked: a request's requested_by, a policy change's actor
    outcome: str = ""             # how the request ended (its first final event), "" while it has not
    message: str = ""
    request_id: str = ""
    backup_id: str = ""           # the backup, or the restore point a restore is of
    topic: str = ""
    vms: set[str] = field(default_factory=set, repr=False)  # every name or id the row's VM goes by
    _step: int = field(default=0, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("vms", "_step")}


def _row(e: Entry) -> Row:
    r = e.record
    if e.topic == "backup.requests":
        return Row(e.at, "backup requested", vm=r.get("vm", ""), policy=r.get("policy") or "",
                   by=r.get("requested_by", ""), request_id=r.get("request_id", ""), topic=e.topic,
                   message=f"{r.get('mode', 'auto')} backup", vms={r.get("vm", "")})
    if e.topic == "backup.events":
        kind = r.get("kind", "")
        detail = r.get("detail") or {}
        if detail.get("job") == "hypervisor-snapshot":  # a snapshot policy's run: no backup, no request record
            return Row(e.at, f"snapshot {kind}", vm=detail.get("vm_name") or r.get("vm", ""),
                       policy=detail.get("policy") or "", by=detail.get("requested_by") or "",
                       message=r.get("message", ""), request_id=r.get("request_id", ""), topic=e.topic,
                       _step=_STEP.get(kind, 0), vms={r.get("vm", ""), detail.get("vm_name") or ""})
        duplicate = detail.get("duplicate_of")
        outcome = r.get("outcome") or {}
        return Row(e.at, "backup duplicate" if duplicate else f"backup {kind}", vm=r.get("vm", ""),
                   message=r.get("message", ""), request_id=r.get("request_id", ""),
                   backup_id=r.get("backup_id") or duplicate or "", topic=e.topic, _step=_STEP.get(kind, 0),
                   vms={r.get("vm", ""), outcome.get("vm_id") or ""})
    if e.topic == "restore.requests":
        target = r.get("target_vm") or r.get("name") or ""
        return Row(e.at, "restore requested", by=r.get("requested_by", ""), request_id=r.get("request_id", ""),
                   backup_id=r.get("restore_point", ""), topic=e.topic, vms={target},
                   message=f"restore point {r.get('restore_point', '')}" + (f" to {target}" if target else "")
                   + (" (replacing the VM)" if r.get("replace") else ""))
    if e.topic == "restore.events":
        kind = r.get("kind", "")
        return Row(e.at, f"restore {kind}", vm=r.get("vm_id") or "", message=r.get("message", ""),
                   request_id=r.get("request_id", ""), backup_id=r.get("restore_point", ""), topic=e.topic,
                   _step=_STEP.get(kind, 0), vms={r.get("vm_id") or ""})
    if e.topic == "policy.events":
        detail = r.get("detail") or {}
        vm = detail.get("vm") or detail.get("vm_name") or ""
        return Row(e.at, f"policy {r.get('action', 'changed')}", vm=vm, policy=r.get("policy", ""),
                   by=r.get("actor", ""), message=r.get("message", ""), topic=e.topic,
                   vms={vm, detail.get("vm_id") or ""})
    return Row(e.at, f"{e.topic} {e.type}", topic=e.topic, message=str(r.get("message", "")))


def rows(entries: Iterable[Entry], *, vm: str | None = None, policy: str | None = None,
         since: float | None = None) -> list[Row]:
    """Every entry as a row, joined to its request (cause, policy, outcome), filtered, newest first."""
    all_rows = [_row(e) for e in entries]
    requests: dict[str, Row] = {}
    outcomes: dict[str, tuple[float, str]] = {}  # request id -> its first final event
    vm_of_backup: dict[str, str] = {}
    request_of_backup: dict[str, str] = {}
    backup_of_request: dict[str, str] = {}
    names: dict[str, set[str]] = {}  # request id -> every name or id its rows give the VM
    for row in all_rows:
        if not row.request_id:
            continue
        names.setdefault(row.request_id, set()).update(row.vms)
        if row.what in ("backup requested", "restore requested"):
            requests.setdefault(row.request_id, row)
        kind = row.what.split(" ", 1)[1]
        if kind in FINAL and (row.request_id not in outcomes or row.at < outcomes[row.request_id][0]):
            outcomes[row.request_id] = (row.at, kind)
        if row.topic == "backup.events" and row.backup_id and row.vm and kind != "duplicate":
            vm_of_backup[row.backup_id] = row.vm
            request_of_backup[row.backup_id] = row.request_id
            backup_of_request.setdefault(row.request_id, row.backup_id)
    for row in all_rows:
        if not row.request_id:
            continue
        request = requests.get(row.request_id)
        if request is not None:
            row.by, row.policy = row.by or request.by, row.policy or request.policy
        row.outcome = outcomes.get(row.request_id, (0.0, ""))[1]
        row.backup_id = row.backup_id or backup_of_request.get(row.request_id, "")
        row.vms |= names[row.request_id]
        if row.topic.startswith("restore."):
            row.vm = vm_of_backup.get(row.backup_id, row.vm)
        elif not row.vm and request is not None:
            row.vm = request.vm
        row.vms.add(row.vm)
    for row in all_rows:
        if row.topic.startswith("restore.") and row.backup_id in request_of_backup:
            row.vms |= names[request_of_backup[row.backup_id]]  # the restore point's VM, by name or id
        row.vms.discard("")
    picked = [r for r in all_rows if (vm is None or vm in r.vms) and (policy is None or r.policy == policy)
              and (since is None or r.at >= since)]
    return sorted(picked, key=lambda r: (r.at, r._step), reverse=True)
