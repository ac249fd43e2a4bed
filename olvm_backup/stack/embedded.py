"""`olvm-backup up`: broker, object store, topics and the services on this machine, until Ctrl-C.

Backups live in the object store's directory under the data dir, so they
outlive the stack; the broker keeps topics in memory only (a fresh `up`
recreates them), which is all the pipeline needs between two runs; the
history outlives them too (the auditor keeps it in the object store).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Settings, to_environ
from ..errors import BackupError
from ..kafka import ensure_topics
from ..objectstore import open_store
from . import components
from .processes import ManagedProcess, pid_alive, port_open, split_hostport
from ..users import generate_first_admin
from .certificate import with_api_certificate
from .repokey import prepare_repository
from .s3rver_layout import adopt_s3rver_objects

log = logging.getLogger(__name__)

SERVICES = ("snapshotter", "reader", "writer", "restorer", "auditor", "scheduler", "api")
MAX_RESTARTS = 5
# Each service's metrics ports under `up`: (offset from OLVM_METRICS_BASE_PORT, how many), the Nth process of a
# service on the Nth port of its block (the README's Metrics section lists them).
METRICS_BLOCKS = {"snapshotter": (0, 1), "restorer": (1, 1), "auditor": (2, 1), "scheduler": (3, 1), "api": (4, 1),
                  "reader": (10, 20), "writer": (30, 20)}


def metrics_port(base: int, service: str, instance: int) -> int:
    """The metrics port of `up`'s `instance`th (from 1) `service`; 0 (none) without a base or past its block."""
    offset, count = METRICS_BLOCKS.get(service, (0, 0))
    return base + offset + instance - 1 if base and 1 <= instance <= count else 0


def stack_file(settings: Settings) -> Path:
    return settings.data_dir / "run" / "stack.json"


def read_stack_file(settings: Settings) -> dict | None:
    try:
        return json.loads(stack_file(settings).read_text())
    except (OSError, ValueError):
        return None


@dataclass
class _Service:
    name: str
    process: ManagedProcess
    restarts: list[float] = field(default_factory=list)
    metrics: str = ""  # where its metrics are served, when they are


async def _prepare(settings: Settings) -> tuple[Settings, Path | None]:
    """The bucket (created on first use) made a repository, encrypted, when it is none yet; the topics."""
    async with open_store(settings.s3) as store:
        prepared = await prepare_repository(store, settings)
    await ensure_topics(settings.kafka)
    return prepared


def _remove_multipart_leftovers(objects: Path) -> None:
    """What uploads of an earlier run left (a writer or the store killed mid-pack): tens of MiB each, never
    finished; the chunks they held were written again into other packs."""
    leftovers = components.multipart_leftovers(objects) if objects.exists() else []
    for path in leftovers:
        path.unlink(missing_ok=True)
    if leftovers:
        log.warning("removed %d unfinished multipart upload(s) an earlier run left in %s", len(leftovers), objects)


class EmbeddedStack:
    def __init__(self, settings: Settings, *, readers: int = 1, writers: int = 1) -> None:
        self.settings = settings
        self.counts = {"snapshotter": 1, "reader": readers, "writer": writers, "restorer": 1, "auditor": 1, "api": 1,
                       "scheduler": 1}
        self.logs = settings.data_dir / "logs"
        self.infra: list[ManagedProcess] = []
        self.services: list[_Service] = []
        self._stop = threading.Event()
        self._owns_stack_file = False
        self.generated_password: Path | None = None  # the passphrase file `up` made for a new repository
        self.first_admin: Path | None = None  # the API's first admin's generated password file, when made now

    def _refuse_second_stack(self) -> None:
        current = read_stack_file(self.settings)
        if current and pid_alive(current.get("pid", 0)):
            raise BackupError(f"a stack already runs from {self.settings.data_dir} (pid {current['pid']}); "
                              "stop it first or use another OLVM_DATA_DIR")

    def start(self) -> None:
        self._refuse_second_stack()
        s = self.settings
        kafka_host, kafka_port = split_hostport(s.kafka.bootstrap_servers)
        s3_host, s3_port = split_hostport(s.s3.endpoint_url)
        self.infra.append(components.broker(kafka_host, kafka_port, self.logs / "broker.log").start())
        objects = s.data_dir / "objects"
        adopted = adopt_s3rver_objects(objects)
        if adopted:
            log.warning("moved %d objects that an earlier embedded store (s3rver) left in %s to plain files",
                        adopted, objects)
        if not port_open(s3_host, s3_port):  # no store serves the files yet, so no upload is live
            _remove_multipart_leftovers(objects)
        self.infra.append(components.object_store(s3_host, s3_port, objects, self.logs / "object-store.log",
                                                  access_key=s.s3.access_key, secret_key=s.s3.secret_key).start())
        s, self.generated_password = asyncio.run(_prepare(s))
        s, _ = with_api_certificate(s)  # the configured certificate, else a self-signed one made once
        self.first_admin = generate_first_admin(s.data_dir)
        self.settings = s
        env = {**os.environ, **to_environ(s)}
        for name in SERVICES:
            for i in range(1, self.counts[name] + 1):
                port = metrics_port(s.metrics.base_port, name, i)
                process = ManagedProcess(f"{name}-{i}", [sys.executable, "-m", f"services.{name}"],
                                         env={**env, "OLVM_METRICS_PORT": str(port)},
                                         log_file=self.logs / f"{name}-{i}.log")
                metrics = f"http://{s.metrics.host}:{port}/metrics" if port else ""
                self.services.append(_Service(process.name, process.start(), metrics=metrics))
        self._write_stack_file()

    def _write_stack_file(self) -> None:
        path = stack_file(self.settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "pid": os.getpid(),
            "started_at": time.time(),
            "data_dir": str(self.settings.data_dir),
            "kafka": self.settings.kafka.bootstrap_servers,
            "s3": self.settings.s3.endpoint_url,
            "objects": str(self.settings.data_dir / "objects"),  # where that endpoint keeps them (space.py)
            "bucket": self.settings.s3.bucket,
            "processes": {p.name: {"pid": p.pid, "log": str(p.log_file)} for p in self.infra}
            | {svc.name: {"pid": svc.process.pid, "log": str(svc.process.log_file)}
               | ({"metrics": svc.metrics} if svc.metrics else {}) for svc in self.services},
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(path)
        self._owns_stack_file = True

    def stop(self) -> None:
        """Services first (they flush and leave their groups), then the object store, then the broker."""
        for svc in reversed(self.services):
            svc.process.stop()
        for process in reversed(self.infra):
            process.stop()
        self.services.clear()
        self.infra.clear()
        if self._owns_stack_file:  # a refused second `up` must not erase the running stack's file
            stack_file(self.settings).unlink(missing_ok=True)
            self._owns_stack_file = False

    def request_stop(self, *_: object) -> None:
        self._stop.set()

    def supervise(self) -> None:
        """Until asked to stop: restart a crashed service (a few times), give up if the broker or store dies."""
        while not self._stop.wait(1.0):
            for process in self.infra:
                if not process.running():
                    raise BackupError(f"{process.name} exited unexpectedly; log: {process.tail()}")
            for svc in self.services:
                if svc.process.running():
                    continue
                now = time.monotonic()
                svc.restarts = [t for t in svc.restarts if now - t < 600] + [now]
                if len(svc.restarts) > MAX_RESTARTS:
                    raise BackupError(f"{svc.name} keeps crashing; log: {svc.process.tail()}")
                log.warning("%s exited with %s, restarting", svc.name, svc.process.proc.returncode)
                svc.process.start()
                self._write_stack_file()


def run_stack(settings: Settings, *, readers: int = 1, writers: int = 1, out=sys.stdout) -> int:
    stack = EmbeddedStack(settings, readers=readers, writers=writers)
    previous = {sig: signal.signal(sig, stack.request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stack.start()
        print(f"broker        {settings.kafka.bootstrap_servers}  (Tansu, memory)", file=out)
        print(f"object store  {settings.s3.endpoint_url}  bucket {settings.s3.bucket}  "
              f"(files in {settings.data_dir / 'objects'})", file=out)
        if stack.generated_password:
            print(f"repository    encrypted; its passphrase was generated into {stack.generated_password}: keep it "
                  "safe, with a copy away from this machine (losing it loses every backup)", file=out)
        for svc in stack.services:
            metrics = f"  metrics {svc.metrics}" if svc.metrics else ""
            print(f"{svc.name:<13} pid {svc.process.pid}  log {svc.process.log_file}{metrics}", file=out)
        api = stack.settings.api
        host = "127.0.0.1" if api.host in ("0.0.0.0", "::") else api.host
        print(f"console, API  https://{host}:{api.port}/  (users: olvm-backup user list; OpenAPI at /api/openapi.json)",
              file=out)
        if stack.first_admin:
            print(f"console user  admin; its password was generated into {stack.first_admin} (olvm-backup user passwd "
                  "admin changes it)", file=out)
        print("stack is up; Ctrl-C stops it", file=out, flush=True)
        stack.supervise()
        print("stopping", file=out, flush=True)
        return 0
    finally:
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
