"""The inventory file: the site a fresh simulator starts with (data centers … VMs with disks and content)."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from .dataplane import guestfs
from .engine.engine import Engine, _mac
from .engine.state import new_id, now

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30,
          "t": 1 << 40, "tib": 1 << 40}


class InventoryError(ValueError):
    pass


def size(value) -> int:
    if isinstance(value, int):
        return value
    m = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", str(value))
    if not m or m.group(2).lower() not in _UNITS:
        raise InventoryError(f"not a size: {value!r} (use bytes, or e.g. 64MiB, 4GiB)")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise InventoryError(f"{path}: expected a mapping at the top")
    return data


def apply(engine: Engine, inv: dict) -> list[tuple[str, list]]:
    """Create the inventory's entities; return the disks to create with their initial content."""
    state = engine.state

    def ref(table: str, name: str, owner: str) -> str:
        hits = [e["id"] for e in state.table(table).values() if e["name"] == name]
        if not hits:
            raise InventoryError(f"{owner}: unknown {table[:-1].replace('_', ' ')} {name!r}")
        return hits[0]

    for dc in inv.get("data_centers") or [{"name": "Default"}]:
        state.put("data_centers", {"id": dc.get("id", new_id()), "name": dc["name"]})
    first_dc = next(iter(state.table("data_centers").values()))["name"]
    for c in inv.get("clusters") or [{"name": "Default"}]:
        state.put("clusters", {"id": c.get("id", new_id()), "name": c["name"],
                               "data_center_id": ref("data_centers", c.get("data_center", first_dc), c["name"])})
    first_cluster = next(iter(state.table("clusters").values()))["name"]
    for h in inv.get("hosts") or [{"name": "host1"}]:
        state.put("hosts", {"id": h.get("id", new_id()), "name": h["name"], "hw_id": new_id(),
                            "cluster_id": ref("clusters", h.get("cluster", first_cluster), h["name"])})
    for sd in inv.get("storage_domains") or [{"name": "data1"}]:
        state.put("storage_domains", {"id": sd.get("id", new_id()), "name": sd["name"],
                                      "available": size(sd.get("available", "1TiB")),
                                      "data_center_id": ref("data_centers", sd.get("data_center", first_dc),
                                                            sd["name"])})
    first_sd = next(iter(state.table("storage_domains").values()))["name"]
    for g in inv.get("tags") or []:
        state.put("tags", {"id": new_id(), "name": g["name"], "description": g.get("description", ""),
                           "parent_id": None})
    seeds = []
    for v in inv.get("vms") or []:
        cpu = {"sockets": 1, "cores": 1, "threads": 1, **(v.get("cpu") or {})}
        up = v.get("status", "down") == "up"
        vm = state.put("vms", {
            "id": v.get("id", new_id()), "name": v["name"], "description": v.get("description", ""),
            "cluster_id": ref("clusters", v.get("cluster", first_cluster), v["name"]), "memory": size(
                v.get("memory", "1GiB")), "cpu": cpu, "os": v.get("os", "other"),
            "status": "up" if up else "down", "host_id": next(iter(state.table("hosts"))) if up else None,
            "guest_agent": bool(v.get("guest_agent", False)), "created": now(), "active_snapshot": new_id(),
            "tags": [ref("tags", t, v["name"]) for t in v.get("tags") or []],
            "nics": [{"id": new_id(), "name": n.get("name", f"nic{i + 1}"), "interface": n.get("interface", "virtio"),
                      "network": n.get("network", "ovirtmgmt"), "mac": n.get("mac") or _mac()}
                     for i, n in enumerate(v.get("nics") or [])]})
        for d in v.get("disks") or []:
            fmt = d.get("format", "cow")
            disk = state.put("disks", {
                "id": d.get("id", new_id()), "image_id": new_id(), "name": d["name"],
                "provisioned_size": size(d["size"]), "format": fmt, "sparse": d.get("sparse", True),
                "storage_domain_id": ref("storage_domains", d.get("storage_domain", first_sd), d["name"]),
                "backup": d.get("backup", "incremental" if fmt == "cow" else "none"), "content_type": "data",
                "description": d.get("description", ""), "status": "ok"})
            state.put("attachments", {"id": disk["id"], "vm_id": vm["id"], "disk_id": disk["id"],
                                      "interface": d.get("interface", "virtio_scsi"),
                                      "bootable": bool(d.get("bootable", False)), "active": True})
            content = [dict(c, offset=size(c.get("offset", 0)), length=size(c["length"]))
                       for c in d.get("content") or []]
            if d.get("filesystems"):
                # Written after the patterns: a partition table and file systems seeded from the trees listed.
                try:
                    content.append({"filesystems": guestfs.plan(d["filesystems"], disk["provisioned_size"],
                                                                disk["id"])})
                except ValueError as e:
                    raise InventoryError(f"disk {d['name']}: {e}") from None
            seeds.append((disk["id"], content))
    return seeds
