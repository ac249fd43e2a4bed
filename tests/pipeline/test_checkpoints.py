"""The engine keeps only the checkpoints the next backup needs: after each committed restore point the snapshotter
removes the older checkpoints and every invalid one, with their bitmaps in the disk images, and a removal that fails
is tried again after the next backup without failing either."""
from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import time
import uuid

import ovirtsdk4 as sdk
import pytest

from olvm_backup.kafka import Bus
from olvm_backup.kafka.follow import Follower
from schemas import BackupEvent, BackupRequest
from schemas.topics import BACKUP_EVENTS, BACKUP_REQUESTS

from .conftest import module_sim

MIB = 1024 * 1024
VM = "tiny1"
BACKUPS = 50
DROP_BITMAPS_BEFORE = 20  # a host loses the bitmaps: every checkpoint turns invalid
REMOVAL_FAILS_AT = 30     # the removal after this backup fails on the host

# One small VM with two qcow2 disks: fifty backups of it take about as long as a few of the shared inventory's.
INVENTORY = f"""
clusters: [{{name: Default}}]
storage_domains: [{{name: data1}}]
vms:
  - name: {VM}
    status: up
    disks:
      - {{name: tiny1_os, size: 4MiB, bootable: true, content: [{{offset: 0, length: 1MiB, pattern: random, seed: 1}}]}}
      - {{name: tiny1_data, size: 4MiB, content: [{{offset: 0, length: 512KiB, pattern: random, seed: 2}}]}}
"""


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """This module's own simulator, with the small VM only."""
    yield from module_sim(tmp_path_factory, INVENTORY)


class Engine:
    """What an admin sees on the engine (SDK) and on the host (the bitmaps in each image, as `qemu-img info`)."""

    def __init__(self, sim) -> None:
        c = sim.connection
        self.images = sim.data / "images"
        self.conn = sdk.Connection(url=c["url"], username=c["username"], password=c["password"], ca_file=c["ca_file"])
        vms = self.conn.system_service().vms_service()
        self.vm = vms.vm_service(vms.list(search=f"name={VM}")[0].id)
        self.disk_ids = [a.disk.id for a in self.vm.disk_attachments_service().list()]

    def checkpoints(self) -> dict[str, str]:
        return {c.id: c.state.value for c in self.vm.checkpoints_service().list()}

    def bitmaps(self) -> dict[str, list[str]]:
        """Every bitmap of every volume of each disk's chain, by file."""
        out = {}
        for disk_id in self.disk_ids:
            for path in sorted((self.images / disk_id).glob("*.qcow2")):
                info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(path)], check=True,
                                                 capture_output=True, text=True, timeout=60).stdout)
                data = (info.get("format-specific") or {}).get("data") or {}
                out[f"{disk_id}/{path.name}"] = [b["name"] for b in data.get("bitmaps", [])]
        return out

    def close(self) -> None:
        self.conn.close()


class Backups:
    """Backups asked for and followed as the CLI does (a request on the bus, the events to the end), on one
    connection for the whole run."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.finals: asyncio.Queue = asyncio.Queue()
        self.events: dict[str, list[BackupEvent]] = {}

    def _seen(self, event: BackupEvent) -> None:
        self.events.setdefault(event.request_id, []).append(event)
        if event.kind in ("completed", "failed", "cancelled"):
            self.finals.put_nowait(event)

    async def run(self, before, after) -> None:
        """BACKUPS backups of VM; before(i) acts as the guest and the faults do, after(i, events) checks."""
        async with Bus(self.settings.kafka, client_id="test-checkpoints") as bus, \
                Follower(self.settings.kafka, BACKUP_EVENTS, self._seen, client_id="test-checkpoints/events"):
            for i in range(BACKUPS):
                await asyncio.to_thread(before, i)
                request = BackupRequest(request_id=str(uuid.uuid4()), vm=VM, mode="full" if i == 0 else "incremental",
                                        requested_by="test", requested_at=time.time())
                await bus.publish(BACKUP_REQUESTS, request, key=VM)
                final = await asyncio.wait_for(self.finals.get(), timeout=180)
                assert final.request_id == request.request_id
                await asyncio.to_thread(after, i, self.events[request.request_id])


def test_the_engine_keeps_only_the_checkpoint_the_next_incremental_needs(pipeline, admin, sim, engine_view):
    engine = Engine(sim)
    taken: list[str] = []  # each backup's new checkpoint, in order

    def before(i: int) -> None:
        if i:  # a little guest write between backups, somewhere else each time
            admin.write(VM, "tiny1_data", (i % 60) * 64 * 1024, 4096, seed=i)
        if i == DROP_BITMAPS_BEFORE:
            admin.fault("drop-bitmaps", vm=VM)
            assert set(engine.checkpoints().values()) == {"invalid"}
        if i == REMOVAL_FAILS_AT:
            admin.fault("checkpoint-remove-fail")

    def after(i: int, events: list[BackupEvent]) -> None:
        final = events[-1]
        assert final.kind == "completed", f"backup {i}: {final.kind}: {final.message}"
        [started] = [e for e in events if e.kind == "started"]
        progress = [e.message for e in events if e.kind == "progress"]
        if i in (0, DROP_BITMAPS_BEFORE):
            assert started.detail["from_checkpoint"] is None
        else:  # what was removed before was never what the next incremental needed
            assert started.detail["from_checkpoint"] == taken[-1], (i, progress)
        taken.append(started.detail["to_checkpoint"])
        on_engine = engine.checkpoints()
        if i == DROP_BITMAPS_BEFORE:
            # Said as it is: the engine lists the checkpoint, as invalid (not "no longer on the engine").
            [fallback] = [m for m in progress if m.startswith("incremental not possible")]
            assert f"lists checkpoint {taken[-2]}" in fallback and "invalid" in fallback, fallback
        if i == REMOVAL_FAILS_AT:
            # The removal failed on the host: the backup completed all the same, and said what stays.
            [failed] = [m for m in progress if m.startswith("could not remove")]
            assert taken[-2] in failed and "tried again" in failed, failed
            assert on_engine == {taken[-2]: "created", taken[-1]: "created"}
        else:  # tried again after the next backup, and gone
            assert on_engine == {taken[-1]: "created"}, (i, progress)

    started = time.monotonic()
    try:
        asyncio.run(Backups(pipeline.settings).run(before, after))
        took = time.monotonic() - started
        print(f"{BACKUPS} backups in {took:.1f} s")

        # The catalog holds every restore point; the engine only the checkpoint the newest one recorded, and the
        # disk images only its bitmap.
        r = pipeline.cli("backups", VM, "--json")
        assert r.returncode == 0, r.stderr
        points = sorted(json.loads(r.stdout), key=lambda p: p["completed_at"])
        assert len(points) == BACKUPS
        assert engine.checkpoints() == {points[-1]["to_checkpoint"]: "created"}
        bitmaps = engine.bitmaps()
        assert bitmaps and all(names == [points[-1]["to_checkpoint"]] for names in bitmaps.values()), bitmaps
        assert engine_view.leftovers() == []
        # The newest restore point, the last of a chain of incrementals, gives back the guest's disk.
        out = sim.data.parent / "tiny1_data.raw"
        r = pipeline.cli("export", points[-1]["backup_id"], "--disk", "tiny1_data", "--output", str(out))
        assert r.returncode == 0, r.stderr
        assert hashlib.sha256(out.read_bytes()).hexdigest() == admin.checksum(VM, "tiny1_data")
    finally:
        engine.close()
