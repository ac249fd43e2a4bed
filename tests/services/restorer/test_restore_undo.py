"""What a failed or cancelled restore leaves on the engine: nothing. The engine here is the product's own adapter
(one SDK thread, calls in order) over an in-memory stand-in for the SDK's services, whose create of a VM or a
disk can be held in flight: the restore is cancelled while the engine is still making the thing, which then
exists although its caller never heard its id. And a restore refused by its checks asks the engine to create
nothing at all."""
from __future__ import annotations

import asyncio
import threading
import time
import uuid
from types import SimpleNamespace

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from olvm_backup.config import EngineSettings, Settings
from olvm_backup.engine import Engine
from olvm_backup.format.diskmap import DiskMap
from olvm_backup.format.manifest import DiskRecord, Manifest
from olvm_backup.objectstore.memory import MemoryStore
from olvm_backup.repository import catalog
from schemas import RestoreRequest
from schemas.topics import RESTORE_EVENTS
from services.restorer.job import RestoreJob
from tests.twins import MemoryBus

MIB = 1024 * 1024
OVF = '<ovf:Envelope xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1/"><Content><Name>vm</Name></Content>' \
      '</ovf:Envelope>'


class FakeSystem:
    """The SDK's system service over in-memory VMs and disks. The create named by `hold` ("vm" or "disk") waits,
    once it has begun, until the test releases it."""

    def __init__(self, hold: str | None = None) -> None:
        self.disks: dict[str, types.Disk] = {}
        self.vms: dict[str, types.Vm] = {"vm-other": types.Vm(id="vm-other", name="other",
                                                              status=types.VmStatus.DOWN)}
        self.creates: list[str] = []  # every create the engine was asked for, "vm NAME" / "disk NAME"
        self.hold = hold
        self.began = threading.Event()
        self.release = threading.Event()

    def _create(self, kind: str, name: str) -> None:
        self.creates.append(f"{kind} {name}")
        if kind == self.hold and not self.began.is_set():
            self.began.set()
            assert self.release.wait(30), "the test never let the create finish"

    def clusters_service(self):
        return SimpleNamespace(list=lambda **_: [types.Cluster(id="c1", name="Default")])

    def storage_domains_service(self):
        return SimpleNamespace(list=lambda **_: [types.StorageDomain(id="sd1", name="data1")])

    def disks_service(self):
        def add(disk: types.Disk) -> types.Disk:
            self._create("disk", disk.name)
            disk_id = disk.id or str(uuid.uuid4())  # the engine honours a given id
            self.disks[disk_id] = types.Disk(id=disk_id, name=disk.name, status=types.DiskStatus.OK)
            return self.disks[disk_id]

        def disk_service(disk_id: str):
            def get(**_) -> types.Disk:
                if disk_id not in self.disks:
                    raise sdk.NotFoundError(f"disk {disk_id} not found", code=404)
                return self.disks[disk_id]

            def remove(**_) -> None:
                get()
                del self.disks[disk_id]
            return SimpleNamespace(get=get, remove=remove)
        return SimpleNamespace(add=add, disk_service=disk_service, list=lambda **_: list(self.disks.values()))

    def vms_service(self):
        def add(vm: types.Vm) -> types.Vm:
            self._create("vm", vm.name)
            vm_id = str(uuid.uuid4())  # the engine picks a new VM's id
            self.vms[vm_id] = types.Vm(id=vm_id, name=vm.name, status=types.VmStatus.DOWN)
            return self.vms[vm_id]

        def search(search: str | None = None, **_) -> list[types.Vm]:
            name = search.split("=", 1)[1] if search else None
            return [v for v in self.vms.values() if name is None or v.name == name]

        def vm_service(vm_id: str):
            def get(**_) -> types.Vm:
                if vm_id not in self.vms:
                    raise sdk.NotFoundError(f"VM {vm_id} not found", code=404)
                return self.vms[vm_id]

            def remove(**_) -> None:
                get()
                del self.vms[vm_id]
            return SimpleNamespace(get=get, remove=remove)
        return SimpleNamespace(add=add, list=search, vm_service=vm_service)


class FakeEngine(Engine):
    def __init__(self, system: FakeSystem) -> None:
        super().__init__(EngineSettings())
        self._system = system

    @property
    def system(self):
        return self._system


async def restore_point(store: MemoryStore) -> None:
    """A committed restore point of VM "vm" with two empty disks on sd1 in cluster c1."""
    disks = [DiskRecord(disk_id=f"d{n}", name=f"disk{n}", size=4 * MIB, format="cow", interface="virtio_scsi",
                        bootable=n == 1, active=True, sparse=True, storage_domain="sd1", mode="full",
                        reason="first backup", map=DiskMap(4 * MIB, [])) for n in (1, 2)]
    await catalog.commit(store, Manifest(
        backup_id="b1", vm_id="vm1", vm_name="vm", mode="full", created_at=1.0, completed_at=2.0,
        to_checkpoint=None, from_checkpoint=None, parent_backup=None, request_id="r0", requested_by="test",
        disks=disks, chunks={}, vm={"cluster_id": "c1"}, ovf_key=await catalog.write_ovf(store, "vm1", "b1", OVF)))


def request(**kw) -> RestoreRequest:
    return RestoreRequest(request_id="r1", restore_point="b1", requested_at=time.time(), **kw)


@pytest.mark.parametrize("held", ["vm", "disk"])
async def test_a_restore_cancelled_while_a_create_is_in_flight_leaves_nothing(held):
    store, system = MemoryStore(), FakeSystem(hold=held)
    await restore_point(store)
    async with FakeEngine(system) as engine:
        job = RestoreJob(Settings(), engine, store, MemoryBus(), request())
        running = asyncio.create_task(job.run())
        assert await asyncio.to_thread(system.began.wait, 10), f"the restore never asked for a {held}"
        running.cancel()  # the service stops while the engine is making the held VM or disk
        await asyncio.sleep(0.2)  # the cancellation reaches every task of the job before the engine answers
        system.release.set()
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(30):
                await running
        await engine.call(lambda: None)  # look once the engine has done all it was asked, the held create too
    assert any(c.startswith(held) for c in system.creates)
    assert system.disks == {}, f"cancelled during the {held}'s create, the restore left disks: {system.disks}"
    assert [v.name for v in system.vms.values()] == ["other"], "the restore left a VM behind"


@pytest.mark.parametrize("asked, named", [
    ({"target_vm": "no-such-vm"}, "no-such-vm"),
    ({"name": "other"}, "a VM named other already exists"),
    ({"storage_domain": "no-such-sd"}, "no-such-sd"),
    ({"cluster": "no-such-cluster"}, "no-such-cluster"),
    ({"disks": ["disk1", "no-such-disk"]}, "no-such-disk"),
])
async def test_a_restore_refused_by_its_checks_asks_the_engine_for_nothing(asked, named):
    store, system = MemoryStore(), FakeSystem()
    await restore_point(store)
    bus = MemoryBus()
    async with FakeEngine(system) as engine:
        assert await RestoreJob(Settings(), engine, store, bus, request(**asked)).run() is None
        await engine.call(lambda: None)  # anything still queued on the engine has run
    [failed] = [e for e in bus.records(RESTORE_EVENTS) if e.kind == "failed"]
    assert named in failed.message, failed.message
    assert system.creates == [], f"refused, the restore still asked the engine for {system.creates}"
    assert system.disks == {} and [v.name for v in system.vms.values()] == ["other"]
