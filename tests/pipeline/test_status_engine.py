"""`olvm-backup status` logs in to the engine as the services do: a wrong password or CA is a part down, named."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-m", "olvm_backup.cli.main"]


def _status(tmp_path: Path, sim, broker: str, moto_endpoint: str, **engine: str) -> tuple[int, str, str]:
    c = sim.connection
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLVM_")}
    env.update(OLVM_DATA_DIR=str(tmp_path / "data"), OLVM_KAFKA_BOOTSTRAP=broker, OLVM_S3_ENDPOINT=moto_endpoint,
               OLVM_ENGINE_URL=c["url"], OLVM_ENGINE_USER=c["username"], OLVM_ENGINE_PASSWORD=c["password"],
               OLVM_ENGINE_CA_FILE=c["ca_file"])
    env.update(engine)
    result = subprocess.run(CLI + ["status"], env=env, capture_output=True, text=True, timeout=60)
    out = result.stdout + result.stderr
    assert "Traceback" not in out, out
    line = next((x for x in result.stdout.splitlines() if " engine " in f" {x} "), "")
    return result.returncode, line, out


def test_status_logs_in_to_the_engine(tmp_path, sim, broker, moto_endpoint):
    _, line, out = _status(tmp_path, sim, broker, moto_endpoint)
    assert line.startswith("ok") and f"logged in as {sim.connection['username']}" in line, out


def test_a_wrong_password_is_a_part_down_and_never_shown(tmp_path, sim, broker, moto_endpoint):
    wrong = "not-the-password-7731"
    rc, line, out = _status(tmp_path, sim, broker, moto_endpoint, OLVM_ENGINE_PASSWORD=wrong)
    assert rc != 0 and line.startswith("DOWN") and "authentication failed" in line, out
    assert wrong not in out


def test_a_ca_that_did_not_sign_the_engine_is_a_part_down_naming_the_setting(tmp_path, sim, broker, moto_endpoint):
    other = Path("/etc/ssl/certs/ca-certificates.crt")  # real CAs, none of which signed the simulator's certificate
    rc, line, out = _status(tmp_path, sim, broker, moto_endpoint, OLVM_ENGINE_CA_FILE=str(other))
    assert rc != 0 and line.startswith("DOWN") and "OLVM_ENGINE_CA_FILE" in line, out
