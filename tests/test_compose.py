"""docker-compose.yml: accepted by compose, and configured only through settings the product declares."""
from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from olvm_backup.config import Settings

REPO = Path(__file__).resolve().parents[1]


def _env_names(obj) -> set[str]:
    names = set()
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        names |= _env_names(value) if dataclasses.is_dataclass(value) else {f.metadata["env"]}
    return names


@pytest.mark.processes  # docker-compose
def test_compose_config_accepts_the_file():
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose is installed by scripts/setup.sh"
    env = {**os.environ, "OLVM_S3_SECRET_KEY": "x", "OLVM_ENGINE_PASSWORD": "y"}
    result = subprocess.run([compose, "-f", str(REPO / "docker-compose.yml"), "config", "-q"],
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_services_use_the_declared_settings_and_real_kafka_and_minio():
    doc = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = doc["services"]
    assert services["kafka"]["image"].startswith("apache/kafka")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert services["minio"]["image"].startswith("minio/minio")
    declared = _env_names(Settings())
    for name in ("snapshotter", "reader", "writer", "restorer", "scheduler", "api"):
        service = services[name]
        assert service["command"] == [f"services.{name}"]
        unknown = set(service["environment"]) - declared
        assert not unknown, f"{name} sets variables the product does not read: {unknown}"


def test_prometheus_scrapes_every_service_on_its_metrics_port():
    doc = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = doc["services"]
    mount = next(v for v in services["prometheus"]["volumes"] if v.endswith(":/etc/prometheus/prometheus.yml:ro"))
    scrape = yaml.safe_load((REPO / mount.split(":")[0]).read_text())
    targets = {(name, sd["port"]) for job in scrape["scrape_configs"] for sd in job.get("dns_sd_configs", [])
               for name in sd["names"]}
    ours = [name for name, s in services.items() if s.get("command", [""])[0].startswith("services.")]
    assert ours
    for name in ours:
        env = services[name]["environment"]
        assert env["OLVM_METRICS_HOST"] == "0.0.0.0", f"{name}'s metrics are not reachable from another container"
        assert (name, int(env["OLVM_METRICS_PORT"])) in targets, f"Prometheus does not scrape {name}"
