"""Where a restore may put a VM: the engine's clusters and its data storage domains (what the console's restore
dialog offers; `olvm-backup restore --cluster/--storage-domain` take the same names). Two list requests."""
from __future__ import annotations

from dataclasses import dataclass

from .connection import Engine


@dataclass(frozen=True)
class Cluster:
    id: str
    name: str
    data_center_id: str | None


@dataclass(frozen=True)
class StorageDomain:
    id: str
    name: str
    status: str | None       # active, maintenance... (None: the engine did not say, as for an unattached one)
    available: int | None    # free bytes, as the engine reports them
    data_center_ids: tuple[str, ...]


def _value(enum) -> str | None:
    return getattr(enum, "value", enum) if enum is not None else None


async def restore_targets(engine: Engine) -> tuple[list[Cluster], list[StorageDomain]]:
    """The clusters and the data storage domains (not ISO or export domains: no disk is restored there), by name."""
    def read() -> tuple[list[Cluster], list[StorageDomain]]:
        system = engine.system
        clusters = [Cluster(c.id, c.name, c.data_center.id if c.data_center is not None else None)
                    for c in system.clusters_service().list()]
        domains = [StorageDomain(sd.id, sd.name, _value(sd.status), sd.available,
                                 tuple(dc.id for dc in sd.data_centers or ()))
                   for sd in system.storage_domains_service().list() if _value(sd.type) in (None, "data")]
        return sorted(clusters, key=lambda c: c.name), sorted(domains, key=lambda d: d.name)
    return await engine.call(read, what="list clusters and storage domains")
