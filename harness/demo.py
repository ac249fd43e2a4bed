"""The demo: the whole product once, on the embedded default, against the OLVM simulator (`python -m harness.demo`,
run by scripts/demo.sh). A development harness: it drives the simulator, so it lives outside the product packages.

Starts the simulator (demo inventory) and the embedded stack, backs web1 up full, writes in the guest, backs it up
incremental, verifies the incremental, restores it as a new VM and compares every restored disk with the source
disk at that point. Prints a report, stops everything it started, and exits 1 if anything differs or fails.

The product reaches the simulator only through the engine API and imageio; the demo alone also uses the simulator's
back door (sim.client), to act as the guest (writes) and to read disk checksums.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import shutil
import sys
import argparse
import time
from pathlib import Path

import sim
from olvm_backup.config import EngineSettings, Settings, load_settings
from olvm_backup.engine import Engine
from olvm_backup.kafka.admin import list_topics
from olvm_backup.errors import BackupError
from olvm_backup.logs import setup_logging
from olvm_backup.repository.sealedstore import open_sealed
from olvm_backup.secret import Secret
from olvm_backup.stack.embedded import EmbeddedStack
from olvm_backup.stack.processes import ManagedProcess
from olvm_backup.repository import catalog
from olvm_backup.repository.verify import verify
from olvm_backup.runtime import secrets_of
from olvm_backup.cli.jobs import request_backup, request_restore
from olvm_backup.cli.progress import duration, human
from schemas.topics import CHUNKS
from sim.client import SimAdmin

VM = "web1"
RESTORED = "web1-restored"
MIB = 1 << 20
# What the "guest" writes between the two backups: (disk, offset, length, seed).
GUEST_WRITES = (("web1_os", 100 * MIB, 4 * MIB, 7), ("web1_os", 200 * MIB, 256 * 1024, 8),
                ("web1_data", 32 * MIB, 1 * MIB, 9))
JOB_TIMEOUT = 600.0


@dataclasses.dataclass
class Step:
    what: str
    ok: bool
    detail: str


def _inventory() -> Path:
    return Path(sim.__file__).parent / "inventories" / "demo.yaml"


def _start_simulator(directory: Path, log_file: Path) -> tuple[ManagedProcess, dict]:
    """A fresh simulator on `directory` (earlier demo state is wiped): the demo always starts from the inventory."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    conn_file = directory / "connection.json"
    process = ManagedProcess("olvm-sim", [sys.executable, "-m", "sim.cli", "serve", "--data", str(directory),
                                          "--inventory", str(_inventory())],
                             log_file=log_file, ready=conn_file.exists, ready_timeout=120)
    process.start()
    return process, json.loads(conn_file.read_text())


def _engine(connection: dict) -> EngineSettings:
    return EngineSettings(url=connection["url"], username=connection["username"],
                          password=Secret(connection["password"]), ca_file=connection["ca_file"])


def _say(text: str) -> None:
    print(f"== {text}", file=sys.stderr, flush=True)


class Demo:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.steps: list[Step] = []
        self.admin = None

    def record(self, what: str, ok: bool, detail: str) -> bool:
        self.steps.append(Step(what, ok, detail))
        _say(f"{'ok' if ok else 'FAILED'}: {what}: {detail}")
        return ok

    def checksums(self, vm: str, disks: list[str]) -> dict[str, str]:
        return {d: self.admin.checksum(vm, d) for d in disks}

    async def backup(self, mode: str) -> str | None:
        _say(f"{mode} backup of {VM}")
        with contextlib.redirect_stdout(sys.stderr):  # the job's id lines: the report below says it all
            rc, event = await request_backup(self.settings, VM, mode, [], True, True, JOB_TIMEOUT)
        if rc or event is None or event.outcome is None:
            self.record(f"{mode} backup", False, event.message if event else "no answer from the pipeline")
            return None
        done = event.outcome
        self.record(f"{done.mode} backup", done.mode == mode,
                    f"restore point {event.backup_id}: read {human(done.bytes_read)}, stored "
                    f"{human(done.bytes_stored)} new, in {duration(done.duration)}")
        return event.backup_id

    async def check_verify(self, backup_id: str) -> bool:
        async with open_sealed(self.settings, ensure_bucket=False) as (store, sealer):
            report = await verify(store, await catalog.find(store, backup_id), sealer)
        return self.record("verify", report.ok, f"{report.chunks_checked} chunks, {human(report.bytes_checked)} "
                           f"checked, {len(report.damage)} damaged")

    async def restore(self, backup_id: str) -> bool:
        _say(f"restore {backup_id} as new VM {RESTORED}")
        with contextlib.redirect_stdout(sys.stderr):
            rc, event = await request_restore(self.settings, backup_id, name=RESTORED, replace=False,
                                              cluster=None, storage_domain=None, disks=[], target_vm=None,
                                              power_on=False, keep_failed=False, wait=True, timeout=JOB_TIMEOUT)
        ok = rc == 0 and event is not None
        detail = event.message if event else "no answer from the pipeline"
        if ok and event.outcome:
            detail += f" ({human(event.outcome.bytes_sent)} sent)"
        return self.record("restore", ok, detail)

    def compare(self, expected: dict[str, str]) -> bool:
        ok = True
        for disk, want in expected.items():
            got = self.admin.checksum(RESTORED, disk)
            ok &= self.record(f"compare {disk}", got == want,
                              f"sha256 {got[:16]}… {'equals' if got == want else 'DIFFERS from'} source {want[:16]}…")
        return ok

    async def run(self) -> bool:
        full = await self.backup("full")
        if full is None:
            return False
        disks = ["web1_os", "web1_data"]
        at_full = self.checksums(VM, disks)
        for disk, offset, length, seed in GUEST_WRITES:
            self.admin.write(VM, disk, offset, length, seed)
        self.record("guest writes", self.checksums(VM, disks) != at_full,
                    f"{len(GUEST_WRITES)} writes, {human(sum(w[2] for w in GUEST_WRITES))} in the guest")
        at_incremental = self.checksums(VM, disks)
        incremental = await self.backup("incremental")
        if incremental is None or not await self.check_verify(incremental):
            return False
        if not await self.restore(incremental):
            return False
        compared = self.compare(at_incremental)
        engine_clean = await self.engine_clean()
        return await self.broker_clean() and engine_clean and compared

    async def engine_clean(self) -> bool:
        """What an admin checks after a job: no open transfer, no running backup, no locked disk."""
        def scan(system) -> list[str]:
            left = [f"transfer {t.id} {t.phase.value}" for t in system.image_transfers_service().list()
                    if not t.phase.value.startswith(("finished", "cancelled"))]
            left += [f"disk {d.alias} {d.status.value}" for d in system.disks_service().list()
                     if d.status.value != "ok"]
            for vm in system.vms_service().list():
                left += [f"backup {b.id} of {vm.name} {b.phase.value}"
                         for b in system.vms_service().vm_service(vm.id).backups_service().list()
                         if b.phase.value not in ("succeeded", "failed")]
            return left
        async with Engine(self.settings.engine) as engine:
            left = await engine.call(lambda: scan(engine.system), what="list transfers, disks and backups")
        return self.record("engine left clean", not left, "; ".join(left) or
                           "no open transfer, no running backup, no locked disk")

    async def broker_clean(self) -> bool:
        """Chunks travel in per-wave topics, deleted once stored: none may be left to hold broker memory."""
        prefix = self.settings.kafka.topic_prefix
        left = [t for t in await list_topics(self.settings.kafka) if CHUNKS.is_member(prefix, t)]
        return self.record("broker left clean", not left, ", ".join(left) or "no chunk topic left on the broker")

    def report(self, started: float) -> None:
        print(f"\nolvm-backup demo: {sum(s.ok for s in self.steps)}/{len(self.steps)} steps ok "
              f"in {duration(time.monotonic() - started)}")
        for s in self.steps:
            print(f"  {'ok  ' if s.ok else 'FAIL'}  {s.what:<22} {s.detail}")


def run_demo(settings: Settings) -> int:
    started = time.monotonic()
    demo_dir = settings.data_dir / "demo"
    _say(f"starting the OLVM simulator (inventory {_inventory().name}, state in {demo_dir / 'sim'})")
    sim_process, connection = _start_simulator(demo_dir / "sim", demo_dir / "sim.log")
    stack = None
    demo = Demo(dataclasses.replace(settings, engine=_engine(connection)))
    ok = False
    try:
        demo.admin = SimAdmin(demo_dir / "sim")
        _say(f"starting the embedded stack (logs in {settings.data_dir / 'logs'})")
        stack = EmbeddedStack(demo.settings)
        stack.start()
        demo.settings = stack.settings  # with the repository's passphrase file, when the stack generated it
        ok = asyncio.run(demo.run())
    except BackupError as e:
        demo.record("demo", False, str(e))
    finally:
        _say("stopping everything the demo started")
        if stack is not None:
            stack.stop()
        sim_process.stop()
    demo.report(started)
    ok = ok and all(s.ok for s in demo.steps)
    print("PASSED: the restored VM's disks equal the source, byte for byte" if ok else
          "FAILED: see the steps above and the logs", flush=True)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML settings file (default: $OLVM_CONFIG); env variables override it")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
        setup_logging(settings.log_level, "olvm-demo", secrets_of(settings))
        return run_demo(settings)
    except BackupError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
