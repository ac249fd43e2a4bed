"""The engine's database: every entity as a plain dict, persisted as one JSON file in the data directory.

Entities are keyed by id in one table per kind. Writes go through `save()`, which replaces the file atomically, so
a killed simulator restarts from its last consistent state.
"""
from __future__ import annotations

import datetime
import json
import threading
import uuid
from pathlib import Path

TABLES = ("data_centers", "clusters", "hosts", "storage_domains", "vms", "disks", "attachments", "snapshots",
          "checkpoints", "backups", "transfers", "tags", "jobs")
# The engine's tag tree hangs from a fixed root tag (its database creates it); a tag without a parent is its child.
ROOT_TAG_ID = "00000000-0000-0000-0000-000000000000"


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def new_id() -> str:
    return str(uuid.uuid4())


class NotFound(KeyError):
    pass


class State:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self.data: dict = {t: {} for t in TABLES}
        self.data.update(events=[], next_event=1, credentials={})
        if path.exists():
            loaded = json.loads(path.read_text())
            self.data.update(loaded)
            for t in TABLES:
                self.data.setdefault(t, {})
        self.data["tags"].setdefault(ROOT_TAG_ID, {"id": ROOT_TAG_ID, "name": "root", "description": "root",
                                                   "parent_id": None})

    @property
    def fresh(self) -> bool:
        return not self.path.exists()

    def save(self) -> None:
        with self._lock:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
            tmp.replace(self.path)

    # -- tables ---------------------------------------------------------------------------------------------
    def table(self, name: str) -> dict[str, dict]:
        return self.data[name]

    def get(self, table: str, entity_id: str) -> dict:
        try:
            return self.data[table][entity_id]
        except KeyError:
            raise NotFound(f"{table}/{entity_id}") from None

    def find(self, table: str, **match) -> list[dict]:
        return [e for e in self.data[table].values() if all(e.get(k) == v for k, v in match.items())]

    def by_name(self, table: str, name_or_id: str) -> dict:
        if name_or_id in self.data[table]:
            return self.data[table][name_or_id]
        hits = [e for e in self.data[table].values() if e.get("name") == name_or_id]
        if not hits:
            raise NotFound(f"{table} named {name_or_id}")
        return hits[0]

    def put(self, table: str, entity: dict) -> dict:
        entity.setdefault("id", new_id())
        self.data[table][entity["id"]] = entity
        return entity

    def delete(self, table: str, entity_id: str) -> None:
        self.data[table].pop(entity_id, None)

    # -- audit log -----------------------------------------------------------------------------------------
    def event(self, code: int, description: str, *, severity: str = "normal", vm_id: str | None = None,
              origin: str = "oVirt", custom_id: int = -1, correlation_id: str | None = None, **refs) -> dict:
        with self._lock:
            event_id = self.data["next_event"]
            self.data["next_event"] = event_id + 1
            ev = {"id": str(event_id), "code": code, "description": description, "severity": severity,
                  "time": now(), "vm_id": vm_id, "origin": origin, "custom_id": custom_id,
                  "correlation_id": correlation_id, **refs}
            self.data["events"].append(ev)
            return ev
