"""Real processes for the tests: the Tansu broker and moto's S3 server, started once per session."""
from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest

from olvm_backup.config import KafkaSettings, S3Settings, Settings
from olvm_backup.secret import Secret
from olvm_backup.stack import components
from olvm_backup.stack.processes import free_port


@pytest.fixture(scope="session")
def process_logs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def broker(process_logs) -> str:
    port = free_port()
    with components.broker("127.0.0.1", port, process_logs / "broker.log"):
        yield f"127.0.0.1:{port}"


@pytest.fixture(scope="session")
def moto_endpoint(process_logs) -> str:
    port = free_port()
    with components.moto("127.0.0.1", port, process_logs / "moto.log"):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def kafka_settings(broker) -> KafkaSettings:
    # A topic prefix per test keeps tests apart on the one broker.
    return KafkaSettings(bootstrap_servers=broker, topic_prefix=f"t{uuid.uuid4().hex[:8]}.", partitions=2)


@pytest.fixture
def s3_settings(moto_endpoint) -> S3Settings:
    return S3Settings(endpoint_url=moto_endpoint, bucket=f"b-{uuid.uuid4().hex[:12]}",
                      access_key=Secret("testing"), secret_key=Secret("testing"))


@pytest.fixture
def settings(tmp_path, kafka_settings, s3_settings) -> Settings:
    return dataclasses.replace(Settings(), data_dir=tmp_path / "data", kafka=kafka_settings, s3=s3_settings)
