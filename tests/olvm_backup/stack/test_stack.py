"""`olvm-backup up` / `status` / Ctrl-C as an operator runs them."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from olvm_backup.config import load_settings
from olvm_backup.objectstore import open_store
from olvm_backup.stack.processes import free_port, pid_alive, port_open

pytestmark = pytest.mark.processes  # each test starts the stack itself

CLI = [sys.executable, "-m", "olvm_backup.cli.main"]


def _env(data_dir: Path, kafka_port: int, s3_port: int) -> dict[str, str]:
    return {**os.environ, "OLVM_DATA_DIR": str(data_dir), "OLVM_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka_port}",
            "OLVM_S3_ENDPOINT": f"http://127.0.0.1:{s3_port}", "OLVM_API_PORT": str(free_port())}


def _start_up(env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        proc = subprocess.Popen(CLI + ["up"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + 60
    while subprocess.run(CLI + ["status"], env=env, capture_output=True).returncode != 0:
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "stack did not come up:\n" + log.read_text()
        time.sleep(1)
    return proc


def _ctrl_c(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal does to the foreground group
    assert proc.wait(60) == 0


def _console_login(env: dict[str, str], data: Path, log: Path) -> None:
    """The console `up` started: HTTPS with the certificate it generated, and the first admin it made, whose
    password it wrote 0600 where it says."""
    import http.client
    import ssl
    import stat

    password_file = data / "api" / "admin.password"
    assert f"its password was generated into {password_file}" in log.read_text()
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    port = int(env["OLVM_API_PORT"])
    deadline = time.monotonic() + 30
    while not port_open("127.0.0.1", port):
        assert time.monotonic() < deadline, "the API did not listen"
        time.sleep(0.5)
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30,
                                       context=ssl.create_default_context(cafile=str(data / "api" / "tls.pem")))
    body = json.dumps({"username": "admin", "password": password_file.read_text().strip()})
    conn.request("POST", "/api/login", body=body, headers={"Content-Type": "application/json"})
    answer = conn.getresponse()
    assert answer.status == 200 and json.loads(answer.read())["role"] == "admin"
    conn.close()


def test_up_status_ctrl_c_leaves_nothing_and_keeps_objects(tmp_path):
    kafka_port, s3_port = free_port(), free_port()
    env = _env(tmp_path / "data", kafka_port, s3_port)
    settings = load_settings(environ=env)

    down = subprocess.run(CLI + ["status"], env=env, capture_output=True, text=True)
    assert down.returncode != 0 and "DOWN" in down.stdout

    proc = _start_up(env, tmp_path / "up1.log")
    try:
        status = subprocess.run(CLI + ["status"], env=env, capture_output=True, text=True)
        for part in ("broker", "object store", "snapshotter-1", "reader-1", "writer-1", "restorer-1"):
            assert part in status.stdout
        pids = [p["pid"] for p in json.loads((tmp_path / "data/run/stack.json").read_text())["processes"].values()]
        _console_login(env, tmp_path / "data", tmp_path / "up1.log")

        async def store_marker():
            async with open_store(settings.s3) as store:
                await store.put("marker", b"kept across restarts")
        asyncio.run(store_marker())
    finally:
        _ctrl_c(proc)

    assert not any(pid_alive(pid) for pid in pids)
    assert not port_open("127.0.0.1", kafka_port) and not port_open("127.0.0.1", s3_port)
    assert not (tmp_path / "data/run/stack.json").exists()

    proc = _start_up(env, tmp_path / "up2.log")
    try:
        async def read_marker():
            async with open_store(settings.s3) as store:
                return await store.get("marker")
        assert asyncio.run(read_marker()) == b"kept across restarts"
    finally:
        _ctrl_c(proc)


def test_second_up_on_same_data_dir_is_refused(tmp_path):
    env = _env(tmp_path / "data", free_port(), free_port())
    proc = _start_up(env, tmp_path / "up.log")
    try:
        second = subprocess.run(CLI + ["up"], env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1 and "already runs" in second.stderr
        assert (tmp_path / "data/run/stack.json").exists()
        assert subprocess.run(CLI + ["status"], env=env, capture_output=True).returncode == 0
    finally:
        _ctrl_c(proc)


def test_a_restart_removes_what_unfinished_uploads_left(tmp_path):
    env = _env(tmp_path / "data", free_port(), free_port())
    settings = load_settings(environ=env)
    packs = tmp_path / "data/objects" / settings.s3.bucket / "packs"
    proc = _start_up(env, tmp_path / "up1.log")
    try:
        status = subprocess.run(CLI + ["status"], env=env, capture_output=True, text=True)
        [disk] = [line for line in status.stdout.splitlines() if "object store disk" in line]
        assert str(tmp_path / "data/objects") in disk and " GiB free" in disk, status.stdout
        done = os.urandom(12 << 20)

        async def one_done_one_dropped():
            async with open_store(settings.s3) as store:
                async with await store.multipart("packs/aa/done", part_size=5 << 20) as upload:
                    await upload.write(done)
                dropped = await store.multipart("packs/aa/dropped", part_size=5 << 20)
                await dropped.write(os.urandom(11 << 20))  # two parts sent, never completed: a killed writer's
                await asyncio.sleep(1)
        asyncio.run(one_done_one_dropped())
        leftovers = [p for p in packs.rglob("*") if p.is_file() and p.name.startswith(".")]
        assert len(leftovers) == 1 and leftovers[0].stat().st_size >= 5 << 20, leftovers
    finally:
        _ctrl_c(proc)
    assert leftovers[0].exists(), "the store removed it at its stop: nothing left to show"

    proc = _start_up(env, tmp_path / "up2.log")
    try:
        assert [p for p in packs.rglob("*") if p.is_file() and p.name.startswith(".")] == []

        async def read_done():
            async with open_store(settings.s3) as store:
                return await store.get("packs/aa/done"), await store.head("packs/aa/dropped")
        assert asyncio.run(read_done()) == (done, None)
    finally:
        _ctrl_c(proc)


def test_history_outlives_a_restart_of_the_whole_stack(tmp_path):
    """The embedded broker keeps topics in memory: after Ctrl-C and `up` again they are empty, and `history` still
    lists what the stack's auditor kept in the object store before (issue 19)."""
    from olvm_backup.kafka import Bus
    from schemas import BackupEvent, PolicyEvent
    from schemas.topics import BACKUP_EVENTS, POLICY_EVENTS

    env = _env(tmp_path / "data", free_port(), free_port())
    settings = load_settings(environ=env)

    def history() -> list[dict]:
        r = subprocess.run(CLI + ["history", "--json"], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    proc = _start_up(env, tmp_path / "up1.log")
    try:
        async def publish() -> None:
            async with Bus(settings.kafka, client_id="test-stack-history") as bus:
                await bus.publish(POLICY_EVENTS, PolicyEvent(policy="gold", action="created", actor="alice@admin",
                                                             at=time.time()), key="gold")
                await bus.publish(BACKUP_EVENTS, BackupEvent(request_id="r1", backup_id="b1", vm="web01",
                                                             kind="completed", at=time.time()), key="r1")
        asyncio.run(publish())
        deadline = time.monotonic() + 60
        while len(history()) < 2:
            assert time.monotonic() < deadline, "the stack's auditor kept nothing within 60 s"
            time.sleep(1)
    finally:
        _ctrl_c(proc)

    proc = _start_up(env, tmp_path / "up2.log")
    try:
        assert [(r["what"], r["by"] or r["vm"]) for r in history()] == [
            ("backup completed", "web01"), ("policy created", "alice@admin")]
    finally:
        _ctrl_c(proc)
