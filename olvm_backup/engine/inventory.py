"""The engine's inventory as the policies see it (VMs with their cluster and tags) and its audit-log event feed.

`list_vms` is one request: `GET /vms?follow=tags,cluster` inlines each VM's tags and its cluster (the engine's
`follow`, 4.2 and later). An engine that did not follow (its VMs come back with a bare cluster reference) is read
the slow way, one tag list per VM, so an older engine still works. A tag's name is all a policy matches: tags form a
hierarchy in the engine, but a VM is tagged with one tag, not with its parents.

Events: the engine lists them newest first, and `from=N` means the events with an id greater than N. `events_since`
returns them oldest first, so a cursor that advances to the last one handled never skips any.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import ovirtsdk4.types as types

from ..policy.selection import VmView
from ..retry import ENGINE_POLL
from .connection import Engine, EngineError


@dataclass(frozen=True)
class EngineEvent:
    """One entry of the engine's audit log. `time`: UNIX seconds. `vm_id`: the event's VM reference, when the
    engine sets one; `vm_name`: that VM's name, or the VM the text names (the engine logs tag attach and detach
    with no VM reference, only `VM(s) NAMES` in the text)."""

    id: int
    code: int
    time: float
    description: str
    vm_id: str | None = None
    vm_name: str | None = None


# "Tag gold was attached to VM(s) web1 by admin@internal-authz." / "... detached from VM(s) a, b by ..."
_VMS_IN_TEXT = re.compile(r"\bVM\(s\) (?P<names>.+?) by \S+\.?$")


def vm_names_in(description: str) -> list[str]:
    """The VM names a tag event's text lists (`${VmsNames}`, comma-separated), in order; [] when none."""
    m = _VMS_IN_TEXT.search(description or "")
    return [n.strip() for n in m.group("names").split(",") if n.strip()] if m else []


def to_event(e: types.Event) -> EngineEvent:
    vm_id = e.vm.id if e.vm is not None and e.vm.id else None
    vm_name = e.vm.name if e.vm is not None and e.vm.name else None
    if vm_name is None:
        names = vm_names_in(e.description or "")
        vm_name = names[0] if len(names) == 1 else None
    return EngineEvent(id=int(e.id), code=int(e.code if e.code is not None else -1),
                       time=e.time.timestamp() if e.time is not None else 0.0,
                       description=e.description or "", vm_id=vm_id, vm_name=vm_name)


def oldest_first(events: list[EngineEvent], after: int, max_events: int) -> list[EngineEvent]:
    """Events with an id above `after`, oldest first, at most `max_events` of them (the oldest)."""
    return sorted((e for e in events if e.id > after), key=lambda e: e.id)[:max_events]


def _view(vm: types.Vm, tags: list[str]) -> VmView:
    cluster = vm.cluster.name if vm.cluster is not None else None
    return VmView(vm_id=vm.id, name=vm.name, cluster=cluster, tags=frozenset(tags))


async def list_vms(engine: Engine) -> list[VmView]:
    """Every VM of the engine as a VmView (id, name, cluster name, tag names), sorted by name."""
    def read() -> list[VmView]:
        system = engine.system
        vms = system.vms_service().list(follow="tags,cluster")
        followed = all(vm.cluster is None or vm.cluster.name is not None for vm in vms)
        out = []
        for vm in vms:
            if followed:
                tags = [g.name for g in vm.tags or []]
            else:  # an engine without `follow`: one request per VM
                tags = [g.name for g in system.vms_service().vm_service(vm.id).tags_service().list()]
            if not followed and vm.cluster is not None and vm.cluster.id:
                vm.cluster = system.clusters_service().cluster_service(vm.cluster.id).get()
            out.append(_view(vm, tags))
        return sorted(out, key=lambda v: (v.name, v.vm_id))

    return await engine.call(read, what="list the VMs with their tags", policy=ENGINE_POLL)


async def latest_event_id(engine: Engine) -> int:
    """The id of the engine's newest event (0 when its log is empty)."""
    def read() -> int:
        newest = engine.system.events_service().list(max=1)
        return int(newest[0].id) if newest else 0

    return await engine.call(read, what="read the engine's newest event", policy=ENGINE_POLL)


async def events_since(engine: Engine, after: int, max_events: int = 500) -> list[EngineEvent]:
    """The events with an id above `after`, oldest first, at most `max_events` (the oldest of them; the rest come
    with the next call from the last one's id). The engine answers `max` with the NEWEST events, so a full page
    means there may be older ones: then every event since `after` is read and the oldest kept."""
    if max_events < 1:
        raise EngineError(f"max_events must be at least 1, not {max_events}")

    def read() -> list[EngineEvent]:
        events = engine.system.events_service()
        page = events.list(from_=after, max=max_events)
        if len(page) >= max_events:
            page = events.list(from_=after)
        return oldest_first([to_event(e) for e in page], after, max_events)

    return await engine.call(read, what=f"read the engine's events after {after}", policy=ENGINE_POLL)
