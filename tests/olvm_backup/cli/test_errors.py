"""What an operator sees when something outside is wrong: one line naming it, a non-zero exit, no traceback."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from olvm_backup.config import KafkaSettings
from olvm_backup.kafka import ensure_topics
from olvm_backup.stack import components
from olvm_backup.stack.processes import free_port, port_open
from schemas.topics import BACKUP_EVENTS, BACKUP_REQUESTS

pytestmark = pytest.mark.processes  # each runs the CLI or a service as a process

CLI = [sys.executable, "-m", "olvm_backup.cli.main"]


def _env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """This machine's environment without any OLVM_ setting of the developer's, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLVM_")}
    return {**env, "OLVM_DATA_DIR": str(tmp_path / "data"), **settings}


def _run(argv: list[str], env: dict[str, str], timeout: float) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    return result, time.monotonic() - started


def _clean_failure(result: subprocess.CompletedProcess, *words: str) -> None:
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "Traceback" not in out, out
    for word in words:
        assert word in out, f"{word!r} not in:\n{out}"


def test_a_broker_that_is_not_there_is_one_line_at_once(tmp_path):
    port = free_port()
    result, took = _run(CLI + ["backup", "web1", "--wait"], _env(tmp_path, OLVM_KAFKA_BOOTSTRAP=f"127.0.0.1:{port}"),
                        timeout=60)
    _clean_failure(result, f"the broker at 127.0.0.1:{port} does not answer", "olvm-backup status")
    assert took < 10, f"took {took:.0f}s"
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_a_broker_that_goes_away_while_following_is_told_once_not_flooded(tmp_path):
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    broker = components.broker("127.0.0.1", port, tmp_path / "broker.log").start()
    try:
        asyncio.run(ensure_topics(KafkaSettings(bootstrap_servers=bootstrap, topic_prefix="e."),
                                  [BACKUP_REQUESTS, BACKUP_EVENTS]))
        err = tmp_path / "cli.err"
        with open(err, "w") as stderr:  # nothing serves the request: the CLI follows until the broker goes
            cli = subprocess.Popen(CLI + ["backup", "web1", "--wait", "--timeout", "300"], stderr=stderr,
                                   stdout=subprocess.PIPE, text=True,
                                   env=_env(tmp_path, OLVM_KAFKA_BOOTSTRAP=bootstrap, OLVM_KAFKA_TOPIC_PREFIX="e."))
        deadline = time.monotonic() + 60
        while "requested:" not in err.read_text():
            assert cli.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.2)
        time.sleep(1.0)
    finally:
        broker.stop()
    gone = time.monotonic()
    try:
        rc = cli.wait(60)
    finally:
        if cli.poll() is None:
            cli.kill()
    took = time.monotonic() - gone
    text = err.read_text()
    _clean_failure(subprocess.CompletedProcess(cli.args, rc, cli.stdout.read(), text),
                   f"the broker at {bootstrap} does not answer")
    assert took < 20, f"the CLI followed a broker that was gone for {took:.0f}s:\n{text}"
    assert len(text.splitlines()) <= 3, f"one line for the broker, not a flood:\n{text}"


def test_an_object_store_that_is_not_there_is_named(tmp_path):
    port = free_port()
    result, took = _run(CLI + ["backups"], _env(tmp_path, OLVM_S3_ENDPOINT=f"http://127.0.0.1:{port}"), timeout=90)
    _clean_failure(result, "object store", f"127.0.0.1:{port}")
    assert took < 30, f"took {took:.0f}s"


@pytest.mark.parametrize("env, value", [
    ("OLVM_LOG_LEVEL", "LOUD"),
    ("OLVM_S3_ENDPOINT", "minio:9000/"),
    ("OLVM_KAFKA_BOOTSTRAP", "k1:port"),
    ("OLVM_CHUNK_SIZE", "0"),
    ("OLVM_STALL_TIMEOUT", "-1"),
])
def test_a_bad_setting_is_named_before_anything_runs(tmp_path, env, value):
    result, took = _run(CLI + ["backups"], _env(tmp_path, **{env: value}), timeout=60)
    _clean_failure(result, env, "configuration")
    assert took < 10, f"took {took:.0f}s"


@pytest.mark.parametrize("service", ["reader", "restorer"])
def test_a_service_with_a_missing_ca_file_stops_at_once_naming_it(tmp_path, service):
    ca = tmp_path / "gone" / "ca.pem"
    env = _env(tmp_path, OLVM_ENGINE_CA_FILE=str(ca), OLVM_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}")
    result, took = _run([sys.executable, "-m", f"services.{service}"], env, timeout=20)
    _clean_failure(result, "OLVM_ENGINE_CA_FILE", str(ca))
    assert took < 10, f"took {took:.0f}s"


def test_up_with_a_missing_ca_file_starts_nothing(tmp_path):
    ca = tmp_path / "gone" / "ca.pem"
    kafka, s3 = free_port(), free_port()
    env = _env(tmp_path, OLVM_ENGINE_CA_FILE=str(ca), OLVM_KAFKA_BOOTSTRAP=f"127.0.0.1:{kafka}",
               OLVM_S3_ENDPOINT=f"http://127.0.0.1:{s3}")
    result, _ = _run(CLI + ["up"], env, timeout=60)
    _clean_failure(result, "OLVM_ENGINE_CA_FILE", str(ca))
    assert not port_open("127.0.0.1", kafka) and not port_open("127.0.0.1", s3)
    assert not (tmp_path / "data/run/stack.json").exists()
