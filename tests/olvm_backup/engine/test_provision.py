"""Creating a disk with the id the caller chose, when the engine's answer is lost: the engine made the disk, the
caller tries again, and must end with that one disk, not a failure on its own id nor a second disk."""
from __future__ import annotations

import uuid
from types import SimpleNamespace

import ovirtsdk4 as sdk
import ovirtsdk4.types as types

from olvm_backup.config import EngineSettings
from olvm_backup.engine import Engine
from olvm_backup.engine import provision


class AnswerLost(Engine):
    """An engine that makes the first disk it is asked for, then drops the connection before answering; a disk
    asked for with a taken id is refused (409), as the simulator does."""

    def __init__(self) -> None:
        super().__init__(EngineSettings())
        self.disks: dict[str, types.Disk] = {}
        self.adds = 0

    @property
    def system(self):
        def add(disk: types.Disk) -> types.Disk:
            self.adds += 1
            if disk.id in self.disks:
                raise sdk.Error(f"Cannot add Virtual Disk. Disk with id {disk.id} already exists", code=409)
            self.disks[disk.id] = types.Disk(id=disk.id, name=disk.name, status=types.DiskStatus.OK)
            if self.adds == 1:
                raise sdk.ConnectionError("connection closed before the answer")
            return self.disks[disk.id]

        def disk_service(disk_id: str):
            def get(**_) -> types.Disk:
                if disk_id not in self.disks:
                    raise sdk.NotFoundError(f"disk {disk_id} not found", code=404)
                return self.disks[disk_id]
            return SimpleNamespace(get=get)
        return SimpleNamespace(disks_service=lambda: SimpleNamespace(add=add, disk_service=disk_service))


async def test_a_create_whose_answer_was_lost_ends_with_the_one_disk_it_made():
    chosen = str(uuid.uuid4())
    async with AnswerLost() as engine:
        made = await provision.create_disk(engine, disk_id=chosen, name="d1", size=1 << 20, fmt="cow", sparse=True,
                                           storage_domain="sd1")
    assert made == chosen
    assert list(engine.disks) == [chosen] and engine.adds == 1
