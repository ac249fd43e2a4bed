"""VM snapshots and their disk volumes on the engine: create, wait, remove, list, and what each snapshot holds.

A snapshot freezes each of its disks' active volume (the snapshot keeps that volume's id) and puts a new active
volume, with a new id, on top; removing one merges its volume with the next in the chain, which the engine does
asynchronously (the snapshot stays `locked`, then goes). While a snapshot is being created or removed the engine
refuses other snapshot work on the VM with 409 (or a 400 saying it is locked): `Engine.call` retries those under
`retry.ENGINE_SNAPSHOT`. Every wait here has a deadline.

Who made a snapshot is told by its description: each caller owns a prefix ("olvm-backup " for backups) and
`remove` refuses a snapshot whose description does not start with it, so nothing here removes a snapshot a user
(or another part of the product) made. The correlation id sent with each call ties the engine's events and jobs
to the caller's work (a backup's id).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import ovirtsdk4.types as types

from ..errors import BackupError
from ..retry import ENGINE, ENGINE_SNAPSHOT, RetryPolicy
from .chains import linked_order
from .connection import Engine, EngineError, EngineNotFound
from .vms import ovf_of

CREATE_DEADLINE = 900.0   # seconds a snapshot may take to become `ok` (a freeze, then a volume per disk)
REMOVE_DEADLINE = 1800.0  # seconds a removal may take to finish: a merge copies the snapshot's layer


class NotOurs(BackupError):
    """A snapshot this caller did not make (its description does not carry the caller's prefix): left alone."""

    template = "snapshot {snapshot_id} of VM {vm_id} ({description!r}): {reason}"


@dataclass(frozen=True)
class SnapshotInfo:
    snapshot_id: str
    vm_id: str
    description: str
    status: str        # "ok", "locked" (being created or removed), "in_preview"
    kind: str          # "regular", "active" (the VM's current state, always listed), "stateless", "preview"
    date: float        # seconds since the epoch; 0 when the engine does not say
    persist_memorystate: bool = False


@dataclass(frozen=True)
class VolumeInfo:
    """One volume of a disk's chain, as the engine lists it (a disk snapshot; the active volume too)."""

    volume_id: str
    disk_id: str
    parent_id: str | None     # the volume below it in the chain; None for the base
    snapshot_id: str | None   # the VM snapshot that froze it; None for the active volume or when not said
    actual_size: int
    status: str


def _value(x) -> str:
    return x.value if x is not None and hasattr(x, "value") else (x or "")


def _snapshot_info(vm_id: str, s: types.Snapshot) -> SnapshotInfo:
    return SnapshotInfo(s.id, vm_id, s.description or "", _value(s.snapshot_status) or "ok",
                        _value(s.snapshot_type) or "regular", s.date.timestamp() if s.date is not None else 0.0,
                        bool(s.persist_memorystate))


def _snapshots(engine: Engine, vm_id: str):
    return engine.system.vms_service().vm_service(vm_id).snapshots_service()


def _query(correlation_id: str | None) -> dict | None:
    return {"correlation_id": correlation_id} if correlation_id else None


async def list_snapshots(engine: Engine, vm_id: str, policy: RetryPolicy = ENGINE) -> list[SnapshotInfo]:
    """The VM's snapshots, oldest first, without the `active` one (the VM's current state is no snapshot to keep
    or remove)."""
    items = await engine.call(lambda: _snapshots(engine, vm_id).list(), what=f"list the snapshots of VM {vm_id}",
                              policy=policy)
    found = [_snapshot_info(vm_id, s) for s in items]
    return sorted((s for s in found if s.kind != "active"), key=lambda s: s.date)


def split_ours(snapshots: Iterable[SnapshotInfo], prefix: str) -> tuple[list[SnapshotInfo], list[SnapshotInfo]]:
    """(the snapshots whose description starts with `prefix`, every other one)."""
    snapshots = list(snapshots)
    ours = [s for s in snapshots if s.description.startswith(prefix)]
    return ours, [s for s in snapshots if s not in ours]


async def get_snapshot(engine: Engine, vm_id: str, snapshot_id: str) -> SnapshotInfo:
    """The snapshot now; EngineNotFound when it is gone."""
    s = await engine.call(lambda: _snapshots(engine, vm_id).snapshot_service(snapshot_id).get(),
                          what=f"read snapshot {snapshot_id} of VM {vm_id}")
    return _snapshot_info(vm_id, s)


async def create_snapshot(engine: Engine, vm_id: str, description: str, *, correlation_id: str | None = None,
                          disk_ids: list[str] | None = None, persist_memorystate: bool = False) -> SnapshotInfo:
    """Ask for a snapshot of the VM (of `disk_ids` only, when given), without its memory: the engine answers at
    once, the snapshot `locked`; `wait_ok` waits for it. A VM locked by other snapshot work is retried.

    `description` must name this call alone (ours carry a backup or correlation id): a retry first looks for a
    snapshot so described, as an attempt whose answer was lost (a 5xx, a timeout) may have made it, and a second
    call would make a twin."""
    asked = False

    def add() -> types.Snapshot:
        nonlocal asked
        if asked:
            made = [s for s in _snapshots(engine, vm_id).list() if s.description == description]
            if made:
                return made[0]
        asked = True
        return _snapshots(engine, vm_id).add(types.Snapshot(
            description=description, persist_memorystate=persist_memorystate,
            disk_attachments=[types.DiskAttachment(disk=types.Disk(id=d)) for d in disk_ids] if disk_ids else None),
            query=_query(correlation_id))

    s = await engine.call(add, what=f"create a snapshot of VM {vm_id}", policy=ENGINE_SNAPSHOT)
    return _snapshot_info(vm_id, s)


async def wait_ok(engine: Engine, vm_id: str, snapshot_id: str, deadline: float = CREATE_DEADLINE) -> SnapshotInfo:
    """Wait for a new snapshot to be `ok`. A creation that fails makes the engine drop the snapshot: its going is
    said as the failure it is."""
    try:
        s = await engine.wait_for(lambda: _snapshots(engine, vm_id).snapshot_service(snapshot_id).get(),
                                  lambda s: _value(s.snapshot_status) == "ok",
                                  failed=lambda s: None if _value(s.snapshot_status) in ("locked", "ok")
                                  else f"snapshot went {_value(s.snapshot_status)}",
                                  what=f"snapshot {snapshot_id} of VM {vm_id} to be created", deadline=deadline)
    except EngineNotFound:
        raise EngineError(f"the engine could not create snapshot {snapshot_id} of VM {vm_id} (it dropped it; its "
                          "events on the VM say why)") from None
    return _snapshot_info(vm_id, s)


async def remove_snapshot(engine: Engine, vm_id: str, snapshot_id: str, *, prefix: str,
                          correlation_id: str | None = None, deadline: float = REMOVE_DEADLINE,
                          policy: RetryPolicy = ENGINE_SNAPSHOT) -> bool:
    """Remove one of our snapshots (its description starts with `prefix`, else NotOurs) and wait until the engine
    lists it no more (the merge runs after the call answers). True once gone; a snapshot already gone counts as
    removed, so a retry is harmless. A snapshot still locked (being created, or another removal) is retried."""
    svc = lambda: _snapshots(engine, vm_id).snapshot_service(snapshot_id)
    try:
        s = await get_snapshot(engine, vm_id, snapshot_id)
        if not s.description.startswith(prefix):
            raise NotOurs(f"not made by this product (no {prefix.strip()!r} in its description): never removed",
                          snapshot_id=snapshot_id, vm_id=vm_id, description=s.description)
        if s.kind == "active":
            raise NotOurs("the VM's active state is no snapshot to remove", snapshot_id=snapshot_id, vm_id=vm_id,
                          description=s.description)
        await engine.call(lambda: svc().remove(query=_query(correlation_id)),
                          what=f"remove snapshot {snapshot_id} of VM {vm_id}", policy=policy)
        # The engine locks the snapshot before the call answers; `ok` again means the merge failed and it stays.
        await engine.wait_for(lambda: svc().get(), lambda _: False, what=f"snapshot {snapshot_id} of VM {vm_id} to go",
                              deadline=deadline,
                              failed=lambda x: "the engine could not remove it: it is ok again, and stays (the "
                              "engine's events on the VM say why)" if _value(x.snapshot_status) == "ok" else None)
    except EngineNotFound:
        pass
    return True


async def snapshot_ovf(engine: Engine, vm_id: str, snapshot_id: str) -> str:
    """The VM's configuration as the snapshot froze it (the OVF a restore recreates the VM from)."""
    # SnapshotService.get has no all_content argument in the SDK; the engine reads the query parameter all the same.
    s = await engine.call(lambda: _snapshots(engine, vm_id).snapshot_service(snapshot_id).get(
        query={"all_content": "true"}),
                          what=f"read the OVF of snapshot {snapshot_id} of VM {vm_id}")
    data = ovf_of(s)
    if not data:
        raise EngineError(f"the engine returned no OVF for snapshot {snapshot_id} of VM {vm_id}")
    return data


async def snapshot_volumes(engine: Engine, vm_id: str, snapshot_id: str) -> dict[str, str]:
    """Per disk id, the volume (image) the snapshot holds of it: its disk snapshot, the one to download."""
    disks = await engine.call(lambda: _snapshots(engine, vm_id).snapshot_service(snapshot_id).disks_service().list(),
                              what=f"list the disks of snapshot {snapshot_id} of VM {vm_id}")
    return {d.id: d.image_id for d in disks if d.image_id}


def _volume_info(v: types.DiskSnapshot, disk_id: str | None = None) -> VolumeInfo:
    return VolumeInfo(v.id, v.disk.id if v.disk is not None else (disk_id or ""),
                      v.parent.id if v.parent is not None else None,
                      v.snapshot.id if v.snapshot is not None else None, v.actual_size or 0,
                      _value(v.status) or "ok")


async def disk_chain(engine: Engine, disk_id: str) -> list[VolumeInfo]:
    """The disk's volumes, the active one included, base first by their parent links (what the engine lists out
    of order, or with a broken link, follows in its own order)."""
    items = await engine.call(lambda: engine.system.disks_service().disk_service(disk_id).disk_snapshots_service()
                              .list(include_active=True), what=f"list the volumes of disk {disk_id}")
    return chain_order([_volume_info(v, disk_id) for v in items])


def chain_order(volumes: Iterable[VolumeInfo]) -> list[VolumeInfo]:
    """Base first, each volume followed by its child."""
    return linked_order(volumes, lambda v: v.volume_id, lambda v: v.parent_id)
