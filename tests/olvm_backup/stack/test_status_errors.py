"""`olvm-backup status` checks the engine as the services use it: a login that fails is a part down, named."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from olvm_backup.stack.processes import free_port

pytestmark = pytest.mark.processes  # runs the CLI as a process

CLI = [sys.executable, "-m", "olvm_backup.cli.main"]


def _run_status(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLVM_")}
    env.update(OLVM_DATA_DIR=str(tmp_path / "data"), **settings)
    result = subprocess.run(CLI + ["status"], env=env, capture_output=True, text=True, timeout=60)
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in out, out
    return result


def _engine_line(result: subprocess.CompletedProcess) -> str:
    return next((line for line in result.stdout.splitlines() if " engine " in f" {line} "), "")


def test_status_says_the_engine_is_down_when_it_does_not_answer(tmp_path, broker, moto_endpoint):
    port = free_port()
    url = f"https://127.0.0.1:{port}/ovirt-engine/api"
    started = time.monotonic()
    result = _run_status(tmp_path, OLVM_KAFKA_BOOTSTRAP=broker, OLVM_S3_ENDPOINT=moto_endpoint, OLVM_ENGINE_URL=url,
                         OLVM_ENGINE_INSECURE="true")
    took = time.monotonic() - started
    line = _engine_line(result)
    assert line.startswith("DOWN") and url in line and str(port) in line.split(url, 1)[1], result.stdout
    assert took < 20, f"took {took:.0f}s"


def test_status_names_a_missing_ca_file(tmp_path, broker, moto_endpoint):
    ca = tmp_path / "gone" / "ca.pem"
    result = _run_status(tmp_path, OLVM_KAFKA_BOOTSTRAP=broker, OLVM_S3_ENDPOINT=moto_endpoint,
                         OLVM_ENGINE_URL=f"https://127.0.0.1:{free_port()}/ovirt-engine/api",
                         OLVM_ENGINE_CA_FILE=str(ca))
    line = _engine_line(result)
    assert line.startswith("DOWN") and "OLVM_ENGINE_CA_FILE" in line and str(ca) in line, result.stdout
