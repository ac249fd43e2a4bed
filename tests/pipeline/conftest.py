"""The whole product against the simulator: sim + broker + moto + the four services as real processes."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Iterable, Iterator

import pytest

from olvm_backup.config import EngineSettings, PipelineSettings, Settings, to_environ
from olvm_backup.kafka import ensure_topics
from olvm_backup.secret import Secret
from olvm_backup.stack.processes import ManagedProcess

MIB = 1024 * 1024

# How disk data moves: over the imageio daemon's local socket, as a client on the host moves it (the default), or
# over TLS (OLVM_TEST_IMAGEIO=tls), as a client elsewhere does. scripts/test.sh runs the tests marked `data_path`
# both ways; any pipeline test runs either way.
IMAGEIO_PATHS = {"socket": True, "tls": False}
IMAGEIO_PATH = os.environ.get("OLVM_TEST_IMAGEIO", "socket")
IMAGEIO_LOGGED = {"socket": "the daemon's local socket", "tls": "TLS"}  # as the reader and restorer log it
if IMAGEIO_PATH not in IMAGEIO_PATHS:
    raise pytest.UsageError(f"OLVM_TEST_IMAGEIO must be one of {', '.join(IMAGEIO_PATHS)}, not {IMAGEIO_PATH!r}")


@dataclasses.dataclass
class Sim:
    process: ManagedProcess
    data: Path
    connection: dict

    def engine_settings(self) -> EngineSettings:
        c = self.connection
        return EngineSettings(url=c["url"], username=c["username"], password=Secret(c["password"]),
                              ca_file=c["ca_file"], imageio_local_socket=IMAGEIO_PATHS[IMAGEIO_PATH])


def start_sim(data: Path, inventory: Path, log: Path) -> Sim:
    conn_file = data / "connection.json"
    process = ManagedProcess(
        "olvm-sim", [sys.executable, "-m", "sim.cli", "serve", "--data", str(data), "--inventory", str(inventory)],
        log_file=log, ready=conn_file.exists, ready_timeout=120)
    process.start()
    return Sim(process, data, json.loads(conn_file.read_text()))


class Pipeline:
    """The four services as processes, started and stopped by the tests."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings = settings
        self.logs = logs
        self.env = {**os.environ, **to_environ(settings)}
        self.processes: dict[str, ManagedProcess] = {}

    def start(self, name: str, service: str, **env: str) -> ManagedProcess:
        """`env`: variables of this process alone (its OLVM_METRICS_PORT)."""
        process = ManagedProcess(name, [sys.executable, "-m", f"services.{service}"], env={**self.env, **env},
                                 log_file=self.logs / f"{name}.log")
        self.processes[name] = process.start()
        return process

    def stop(self, name: str) -> None:
        self.processes.pop(name).stop()

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)

    def chunk_topics(self, settle: float = 0.0) -> list[str]:
        """Chunk topics still on the broker (waiting up to `settle` seconds for them to go)."""
        from olvm_backup.kafka.admin import list_topics
        from schemas.topics import CHUNKS
        deadline = time.monotonic() + settle
        while True:
            left = [t for t in asyncio.run(list_topics(self.settings.kafka))
                    if CHUNKS.is_member(self.settings.kafka.topic_prefix, t)]
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(1.0)

    def backup_events(self) -> dict[str, list]:
        """Every BackupEvent on the topic so far, by request id, in order: the audit trail an admin reads."""
        from aiokafka import TopicPartition
        from olvm_backup.kafka.consumer import kafka_consumer, partitions_of
        from schemas import decode
        from schemas.topics import BACKUP_EVENTS

        async def read() -> dict[str, list]:
            consumer = kafka_consumer(self.settings.kafka, group=None, client_id="test-events",
                                      fetch_max_bytes=8 * MIB)
            await consumer.start()
            try:
                name = BACKUP_EVENTS.full_name(self.settings.kafka.topic_prefix)
                tps = [TopicPartition(name, p) for p in sorted(await partitions_of(consumer, name))]
                consumer.assign(tps)
                for tp in tps:
                    consumer.seek(tp, 0)
                end = await consumer.end_offsets(tps)
                events: dict[str, list] = {}
                while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
                    for records in (await consumer.getmany(timeout_ms=1000)).values():
                        for r in records:
                            event = decode(r.value, BACKUP_EVENTS.records)
                            events.setdefault(event.request_id, []).append(event)
                return events
            finally:
                await consumer.stop()
        return asyncio.run(read())

    def journals(self) -> list[str]:
        """The snapshotter's journals in the bucket: backups it holds (or held) something open on the engine for."""
        from olvm_backup.objectstore import open_store

        async def keys() -> list[str]:
            async with open_store(self.settings.s3) as store:
                return [info.key async for info in store.list("jobs/")]
        return asyncio.run(keys())

    def data_paths(self, service: str) -> set[str]:
        """How a service moved disk data, by its log: "TLS" or "the daemon's local socket" (see IMAGEIO_PATH), and
        " through the proxy" after it when the proxy carried it."""
        log = (self.logs / f"{service}.log").read_text()
        return set(re.findall(r" over ((?:TLS|the daemon's local socket)(?: through the proxy)?)", log))

    def cli(self, *args: str, timeout: float = 600):
        import subprocess
        return subprocess.run([sys.executable, "-m", "olvm_backup.cli.main", *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout)


def pipeline_settings(broker: str, moto_endpoint: str, sim: Sim, data_dir: Path, **pipeline) -> Settings:
    from olvm_backup.config import KafkaSettings, RepositorySettings, S3Settings
    tag = uuid.uuid4().hex[:8]
    return Settings(
        data_dir=data_dir, log_level="INFO",
        kafka=KafkaSettings(bootstrap_servers=broker, topic_prefix=f"p{tag}.", partitions=4),
        s3=S3Settings(endpoint_url=moto_endpoint, bucket=f"p-{tag}", access_key=Secret("testing"),
                      secret_key=Secret("testing")),
        engine=sim.engine_settings(),
        pipeline=PipelineSettings(**pipeline),
        repository=RepositorySettings(password=Secret(f"pass-{tag}")),
    )


def init_repository(settings: Settings) -> None:
    """An encrypted repository, as every new one is (`olvm-backup init`), with a cheaper passphrase KDF: the
    services open the key at each start, and these tests start many."""
    from olvm_backup.objectstore import open_store
    from olvm_backup.repository import keyring

    async def init() -> None:
        async with open_store(settings.s3) as store:
            await keyring.init_repository(store, settings.repository, n=2 ** 14)
    asyncio.run(init())


def prepare_topics(settings: Settings) -> None:
    asyncio.run(ensure_topics(settings.kafka))


def running_pipeline(broker: str, moto_endpoint: str, sim: Sim, logs: Path,
                     services: Iterable[str] = ("snapshotter", "reader", "writer", "restorer"),
                     **pipeline) -> Iterator[Pipeline]:
    """Fresh topics and an encrypted repository, `services` started against the simulator (logs and data under
    `logs`), stopped at the end: the body of a pipeline fixture, `yield from running_pipeline(...)`."""
    settings = pipeline_settings(broker, moto_endpoint, sim, logs / "data", **pipeline)
    prepare_topics(settings)
    init_repository(settings)
    p = Pipeline(settings, logs)
    try:  # one that fails to start stops the ones started before it
        for name in services:
            p.start(name, name)
        yield p
    finally:
        p.stop_all()


INVENTORY = Path(__file__).with_name("inventory.yaml")


def module_sim(tmp_path_factory, inventory: str | None = None) -> Iterator[Sim]:
    """A test module's simulator, seeded from `inventory` (YAML text; inventory.yaml when None), stopped at the end:
    the body of a module-scoped `sim` fixture, `yield from module_sim(tmp_path_factory, INVENTORY)`."""
    if inventory is None:
        path = INVENTORY
    else:
        path = tmp_path_factory.mktemp("inventory") / "inventory.yaml"
        path.write_text(inventory)
    data = tmp_path_factory.mktemp("sim")
    s = start_sim(data, path, data / "sim.log")
    yield s
    s.process.stop()


def one_small_vm(name: str, status: str) -> str:
    """The inventory of a module about a backup or two of one VM: `name` alone, with one 4 MiB disk (1 MiB of data)."""
    return f"""
clusters: [{{name: Default}}]
storage_domains: [{{name: data1}}]
vms:
  - name: {name}
    status: {status}
    disks:
      - name: {name}_os
        size: 4MiB
        bootable: true
        content: [{{offset: 0, length: 1MiB, pattern: random, seed: 1}}]
"""


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Sim:
    """One simulator per test module, seeded from inventory.yaml; stopped (and checked clean) at the end."""
    yield from module_sim(tmp_path_factory)


@pytest.fixture(scope="module")
def admin(sim):
    from sim.client import SimAdmin
    return SimAdmin(sim.data)


@pytest.fixture
def pipeline(broker, moto_endpoint, sim, tmp_path) -> Pipeline:
    """The four services against the simulator, with a fresh topic prefix and bucket."""
    # Small tasks and waves: app1's 1 GiB disk (132 MiB of data) makes several of each, two waves in flight.
    yield from running_pipeline(broker, moto_endpoint, sim, tmp_path, task_size=64 * MIB, wave_bytes=32 * MIB,
                                waves_in_flight=2)


class EngineView:
    """What an admin would check on the engine, through the SDK only: transfers, backups, disk locks."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim

    def _connect(self):
        import ovirtsdk4 as sdk
        c = self.sim.connection
        return sdk.Connection(url=c["url"], username=c["username"], password=c["password"], ca_file=c["ca_file"])

    def call(self, fn):
        conn = self._connect()
        try:
            return fn(conn.system_service())
        finally:
            conn.close()

    def leftovers(self, settle: float = 15.0) -> list[str]:
        """Open transfers, running backups and locked disks; waits up to `settle` s for async endings."""
        deadline = time.monotonic() + settle
        while True:
            def scan(system):
                out = []
                for t in system.image_transfers_service().list():
                    if not t.phase.value.startswith(("finished", "cancelled")):
                        out.append(f"transfer {t.id} in phase {t.phase.value}")
                for vm in system.vms_service().list():
                    vs = system.vms_service().vm_service(vm.id)
                    for b in vs.backups_service().list():
                        if b.phase.value not in ("succeeded", "failed"):
                            out.append(f"backup {b.id} of {vm.name} in phase {b.phase.value}")
                for d in system.disks_service().list():
                    if d.status.value != "ok":
                        out.append(f"disk {d.name} is {d.status.value}")
                return out
            found = self.call(scan)
            if not found or time.monotonic() > deadline:
                return found
            time.sleep(0.5)

    def transferred(self, backup_id: str) -> int:
        """Bytes the imageio daemon served for one engine backup (the daemon's own count)."""
        def count(system):
            return sum(t.transferred or 0 for t in system.image_transfers_service().list()
                       if t.backup is not None and t.backup.id == backup_id)
        return self.call(count)


@pytest.fixture(scope="module")
def engine_view(sim) -> EngineView:
    return EngineView(sim)
