"""The whole product against the simulator: sim + broker + moto + the four services as real processes."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
import time
import uuid
from pathlib import Path

import pytest

from olvm_backup.config import EngineSettings, PipelineSettings, Settings, to_environ
from olvm_backup.kafka import ensure_topics
from olvm_backup.secret import Secret
from olvm_backup.stack.processes import ManagedProcess

MIB = 1024 * 1024


@dataclasses.dataclass
class Sim:
    process: ManagedProcess
    data: Path
    connection: dict

    def engine_settings(self) -> EngineSettings:
        c = self.connection
        return EngineSettings(url=c["url"], username=c["username"], password=Secret(c["password"]),
                              ca_file=c["ca_file"])


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

    def start(self, name: str, service: str) -> ManagedProcess:
        process = ManagedProcess(name, [sys.executable, "-m", f"services.{service}"], env=self.env,
                                 log_file=self.logs / f"{name}.log")
        self.processes[name] = process.start()
        return process

    def stop(self, name: str) -> None:
        self.processes.pop(name).stop()

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)

    def cli(self, *args: str, timeout: float = 600):
        import subprocess
        return subprocess.run([sys.executable, "-m", "olvm_backup.cli.main", *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout)


def pipeline_settings(broker: str, moto_endpoint: str, sim: Sim, data_dir: Path, **pipeline) -> Settings:
    from olvm_backup.config import KafkaSettings, S3Settings
    tag = uuid.uuid4().hex[:8]
    return Settings(
        data_dir=data_dir, log_level="INFO",
        kafka=KafkaSettings(bootstrap_servers=broker, topic_prefix=f"p{tag}.", partitions=4),
        s3=S3Settings(endpoint_url=moto_endpoint, bucket=f"p-{tag}", access_key=Secret("testing"),
                      secret_key=Secret("testing")),
        engine=sim.engine_settings(),
        pipeline=PipelineSettings(**pipeline),
    )


def prepare_topics(settings: Settings) -> None:
    asyncio.run(ensure_topics(settings.kafka))
