"""Pre/post commands through the whole pipeline against the simulator (issue 23): guest commands over SSH to the
simulator's endpoint for each VM, node commands on this machine. The simulator records each guest command with its
time, the engine's events say when it froze and thawed the guest: "before" runs before the freeze, "after" after
the thaw, for a CBT backup and around the snapshot strategy's snapshot. A failing or hanging "before" fails the
backup with the command's message and nothing left on the engine, and its "after" still runs; an ignored exit code
warns; a guest whose host key is not the pinned one is refused; no private key or password reaches a log, a topic
or the bucket. One simulator and one pipeline for the module, 4 MiB disks."""
from __future__ import annotations

import asyncio
import json
import re

import asyncssh
import pytest

from olvm_backup.commands import parse_spec, run_command

from .conftest import EngineView, Pipeline, module_sim, running_pipeline

INVENTORY = """
clusters: [{name: Default}]
storage_domains: [{name: data1}]
vms:
  - name: db1
    status: up
    guest_agent: true
    disks:
      - name: db1_os
        size: 4MiB
        bootable: true
        content: [{offset: 0, length: 1MiB, pattern: random, seed: 1}]
  - name: app2
    status: up
    guest_agent: true
    disks:
      - name: app2_os
        size: 4MiB
        bootable: true
        content: [{offset: 0, length: 1MiB, pattern: random, seed: 2}]
"""
FREEZE, THAW = 10900, 10902


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    yield from module_sim(tmp_path_factory, INVENTORY)


@pytest.fixture(scope="module")
def pipeline(broker, moto_endpoint, sim, tmp_path_factory) -> Pipeline:
    yield from running_pipeline(broker, moto_endpoint, sim, tmp_path_factory.mktemp("commands-pipeline"))


@pytest.fixture(scope="module")
def guests(sim, tmp_path_factory) -> dict:
    """Each VM's SSH endpoint, our key authorized on it; the key and the known-hosts files on the "node"."""
    from sim.client import SimAdmin
    admin = SimAdmin(sim.data)
    keys = tmp_path_factory.mktemp("keys")
    key = asyncssh.generate_private_key("ssh-ed25519")
    key_file = keys / "id_guests"
    key_file.write_bytes(key.export_private_key())
    key_file.chmod(0o600)
    out = {"admin": admin, "key_file": str(key_file), "private": key_file.read_text()}
    for vm in ("db1", "app2"):
        ep = admin.guest_ssh(vm, authorize=key.export_public_key().decode())
        known = keys / f"known_hosts_{vm}"
        known.write_text(ep["known_hosts"] + "\n")
        out[vm] = {**ep, "known_hosts_file": str(known)}
    return out


def guest_command(guests, vm: str, phase: str, command: str, **options) -> str:
    g = guests[vm]
    opts = {"phase": phase, "where": "guest", "host": g["host"], "port": g["port"], "user": "backup",
            "key": guests["key_file"], "known-hosts": g["known_hosts_file"], "timeout": 20, **options}
    return ",".join(f"{k}={v}" for k, v in opts.items()) + " -- " + command


def backup(pipeline: Pipeline, vm: str, *commands: str, strategy: str = "cbt"):
    """`olvm-backup backup VM --wait --command ...`: (exit code, backup id or None, request id, final message)."""
    args = ["backup", vm, "--wait", "--timeout", "180", "--strategy", strategy]
    for c in commands:
        args += ["--command", c]
    done = pipeline.cli(*args, timeout=240)
    request_id = re.search(r"requested: (\S+)", done.stderr).group(1)
    final = pipeline.backup_events()[request_id][-1]
    return done.returncode, final.backup_id, request_id, final


def engine_times(view: EngineView, backup_id: str) -> dict[int, float]:
    """When the engine logged each event of the backup (its correlation id), by code."""
    def read(system):
        return {e.code: e.time.timestamp() for e in system.events_service().list()
                if e.correlation_id == backup_id and e.code in (FREEZE, THAW)}
    return view.call(read)


def engine_backups(view: EngineView, vm: str) -> int:
    def count(system):
        [v] = system.vms_service().list(search=f"name={vm}")
        return len(system.vms_service().vm_service(v.id).backups_service().list())
    return view.call(count)


def since(guests, vm: str, before: int) -> list[dict]:
    return guests["admin"].ssh_log(vm)[before:]


def test_before_runs_before_the_freeze_and_after_after_the_thaw(pipeline, guests, engine_view, tmp_path):
    seen = len(guests["admin"].ssh_log("db1"))
    result_file = tmp_path / "result"
    rc, backup_id, request_id, final = backup(
        pipeline, "db1",
        guest_command(guests, "db1", "before", "db-flush --all", **{"env.MODE": "fast"}),
        guest_command(guests, "db1", "after", "db-resume"),
        f"phase=after-backup,stderr=ignore -- sh -c 'echo $OLVM_RESULT $OLVM_VM > {result_file}'")
    assert rc == 0, final.message
    flush, resume = since(guests, "db1", seen)
    assert (flush["command"], resume["command"]) == ("db-flush --all", "db-resume")
    assert flush["env"]["MODE"] == "fast" and flush["env"]["OLVM_PHASE"] == "before"
    assert flush["env"]["OLVM_BACKUP_ID"] == backup_id and flush["user"] == "backup"
    at = engine_times(engine_view, backup_id)
    assert set(at) == {FREEZE, THAW}, at
    assert flush["ended_at"] < at[FREEZE] <= at[THAW] < resume["at"], (flush, resume, at)
    assert result_file.read_text().split() == ["completed", "db1"]
    # Each command's result is an event of the backup, in the order they ran, and each phase one of its steps.
    said = [e.detail["command"] for e in pipeline.backup_events()[request_id] if "command" in e.detail]
    assert [(c["phase"], c["where"], c["status"]) for c in said] == [
        ("before", "guest", "ok"), ("after", "guest", "ok"), ("after-backup", "node", "ok")]
    assert all(c["duration"] >= 0 for c in said)
    assert {"before commands", "after commands"} <= set(final.outcome.steps)


def test_a_failing_before_fails_the_backup_cleanly_and_its_after_still_runs(pipeline, guests, engine_view):
    guests["admin"].ssh_behave("db1", "db-flush", exit=3, stderr="database is busy\n", count=1)
    seen = len(guests["admin"].ssh_log("db1"))
    backups = engine_backups(engine_view, "db1")
    rc, _, _, final = backup(pipeline, "db1", guest_command(guests, "db1", "before", "db-flush"),
                             guest_command(guests, "db1", "after", "db-resume"))
    assert rc == 1 and final.kind == "failed"
    assert final.message.startswith("before commands: guest command 'db-flush' (before) exited 3; stderr: database "
                                    "is busy"), final.message
    # Nothing was asked of the engine, and the application let go all the same.
    assert engine_backups(engine_view, "db1") == backups and engine_view.leftovers() == []
    assert [r["command"] for r in since(guests, "db1", seen)] == ["db-flush", "db-resume"]


def test_an_ignored_exit_code_warns_and_the_backup_goes_on(pipeline, guests):
    guests["admin"].ssh_behave("db1", "db-flush", exit=101, count=1)
    # The after-backup command shows what of the snapshotter's environment a node command sees: its output's tail
    # goes to the events, where the last test looks for the passwords.
    rc, _, request_id, final = backup(pipeline, "db1", guest_command(guests, "db1", "before", "db-flush",
                                                                     ignore="15,101-150"),
                                      "phase=after-backup -- sh -c 'env | grep -e ^OLVM_ -e ^AWS_ || true'")
    assert rc == 0, final.message
    warned = [e.message for e in pipeline.backup_events()[request_id] if e.message.startswith("warning: ")]
    assert warned == ["warning: guest command 'db-flush' (before) exited 101, an exit code it ignores"], warned


def test_a_request_delivered_twice_runs_its_commands_once(pipeline, guests):
    import time
    import uuid

    from olvm_backup.commands import parse_cli, spec_to_doc
    from olvm_backup.kafka import Bus
    from schemas import BackupRequest
    from schemas.records import CommandSpec
    from schemas.topics import BACKUP_REQUESTS

    specs = [CommandSpec(**spec_to_doc(parse_cli(guest_command(guests, "db1", phase, command))))
             for phase, command in (("before", "db-flush"), ("after", "db-resume"))]
    request = BackupRequest(request_id=str(uuid.uuid4()), vm="db1", requested_at=time.time(), commands=specs)

    async def publish_twice() -> None:
        async with Bus(pipeline.settings.kafka, client_id="test-twice") as bus:
            for _ in range(2):  # as a scheduler's failover or a redelivery would
                await bus.publish(BACKUP_REQUESTS, request, key="db1")
    asyncio.run(publish_twice())
    deadline = time.monotonic() + 120
    while True:  # the backup completed, and the second delivery was told it is a duplicate
        events = pipeline.backup_events().get(request.request_id, [])
        if any(e.kind == "completed" for e in events) and any("duplicate_of" in e.detail for e in events):
            break
        assert time.monotonic() < deadline, [e.message for e in events]
        time.sleep(0.5)
    mine = [r["command"] for r in guests["admin"].ssh_log("db1") if r["env"].get("OLVM_REQUEST_ID") ==
            request.request_id]
    assert mine == ["db-flush", "db-resume"], mine


def test_a_hanging_before_is_killed_at_its_timeout_and_said(pipeline, guests, engine_view):
    guests["admin"].ssh_behave("db1", "db-flush", hang=600, count=1)
    seen = len(guests["admin"].ssh_log("db1"))
    rc, _, _, final = backup(pipeline, "db1", guest_command(guests, "db1", "before", "db-flush", timeout=2))
    assert rc == 1 and "guest command 'db-flush' (before) still running after its timeout of 2s: killed" in \
        final.message, final.message
    [hung] = since(guests, "db1", seen)
    assert hung["ended"] == "closed by the client" and 1.5 < hung["ended_at"] - hung["at"] < 10, hung
    assert engine_view.leftovers() == []


def test_the_snapshot_strategy_runs_them_around_its_snapshot(pipeline, guests, engine_view):
    seen = len(guests["admin"].ssh_log("app2"))
    rc, backup_id, _, final = backup(pipeline, "app2", guest_command(guests, "app2", "before", "app-freeze"),
                                     guest_command(guests, "app2", "after", "app-thaw"), strategy="snapshot")
    assert rc == 0, final.message
    freeze, thaw = since(guests, "app2", seen)
    at = engine_times(engine_view, backup_id)
    assert set(at) == {FREEZE, THAW}, at
    assert freeze["ended_at"] < at[FREEZE] <= at[THAW] < thaw["at"], (freeze, thaw, at)


def test_restore_commands_of_the_policy_and_the_command_line(pipeline, engine_view, tmp_path):
    said = tmp_path / "said"
    policy = tmp_path / "dbs.json"
    policy.write_text(json.dumps({"vms": ["db1"], "vm_commands": {"db1": [
        {"phase": "before-restore", "run": ["sh", "-c", f"echo before $OLVM_RESTORE_POINT >> {said}"]},
        {"phase": "after-restore", "run": ["sh", "-c", f"echo after $OLVM_RESULT >> {said}"]}]}}))
    done = pipeline.cli("policy", "create", "dbs", "--file", str(policy))
    assert done.returncode == 0, done.stderr
    point = json.loads(pipeline.cli("backups", "db1", "--json").stdout)[0]["backup_id"]
    # The policy's before-restore runs, then the command line's fails the restore before anything is created.
    done = pipeline.cli("restore", point, "--name", "db1-restored", "--wait", "--timeout", "120",
                        "--command", "phase=before-restore -- sh -c 'echo disk full >&2; exit 4'")
    assert done.returncode == 1 and "node command 'sh' (before-restore) exited 4; stderr: disk full" in done.stderr, \
        done.stderr
    assert said.read_text().splitlines() == [f"before {point}", "after failed"]
    assert engine_view.call(lambda s: s.vms_service().list(search="name=db1-restored")) == []


def run(spec: dict):
    return asyncio.run(run_command(parse_spec({"phase": "before", **spec}), {}))


def guest_spec(guests, vm: str, command: list[str], **kw) -> dict:
    g = guests[vm]
    return {"where": "guest", "run": command, "host": g["host"], "port": g["port"], "key_file": guests["key_file"],
            "known_hosts": g["known_hosts_file"], **kw}


def test_a_guest_whose_host_key_is_not_the_pinned_one_is_refused(guests, tmp_path):
    seen = len(guests["admin"].ssh_log("db1"))
    other = tmp_path / "known_hosts"
    # db1's address, app2's host key: as a guest impersonated by another machine.
    other.write_text(f"[{guests['db1']['host']}]:{guests['db1']['port']} {guests['app2']['host_key']}\n")
    result = run(guest_spec(guests, "db1", ["db-flush"], known_hosts=str(other)))
    assert result.status == "failed" and "does not match the pinned one" in result.message, result.message
    assert since(guests, "db1", seen) == []  # refused before a command was sent


@pytest.mark.parametrize("policy, status", [("fail", "failed"), ("warn", "warned"), ("ignore", "ok")])
def test_each_stderr_policy_over_ssh(guests, policy, status):
    guests["admin"].ssh_behave("db1", f"noisy-{policy}", stderr="note: cache is cold\n", count=1)
    result = run(guest_spec(guests, "db1", [f"noisy-{policy}"], stderr=policy))
    assert result.status == status and result.exit_code == 0 and result.stderr_tail == "note: cache is cold"


def test_no_key_or_password_in_logs_topics_or_objects(pipeline, guests, sim):
    """Runs last: over everything the module's backups wrote."""
    settings = pipeline.settings
    body = [line for line in guests["private"].splitlines() if line and not line.startswith("-----")]
    secrets = {"private key line": body, "repository password": [settings.repository.password.reveal()],
               "engine password": [sim.connection["password"]], "S3 secret": [settings.s3.secret_key.reveal()]}
    secrets["S3 secret"] = [s for s in secrets["S3 secret"] if len(s) >= 8]  # moto's 'testing' is everywhere
    places = {p.name: p.read_bytes() for p in pipeline.logs.glob("*.log")}
    places["sim.log"] = (sim.data / "sim.log").read_bytes()
    places.update(asyncio.run(_topic_records(settings)))
    places.update(asyncio.run(_objects(settings)))
    # The reading works: the key's path is in the requests, as it should be.
    assert any(guests["key_file"].encode() in data for name, data in places.items() if "backup.requests" in name), \
        sorted(places)
    found = [(what, name) for what, values in secrets.items() for value in values
             for name, data in places.items() if value and value.encode() in data]
    assert found == [], found


async def _topic_records(settings) -> dict[str, bytes]:
    """Every record's key and value, raw, per topic of the installation."""
    from aiokafka import TopicPartition

    from olvm_backup.kafka.admin import list_topics
    from olvm_backup.kafka.consumer import kafka_consumer, partitions_of
    out: dict[str, bytes] = {}
    for topic in [t for t in await list_topics(settings.kafka) if t.startswith(settings.kafka.topic_prefix)]:
        # A consumer per topic: one assigned to a topic no longer learns the others' partitions.
        consumer = kafka_consumer(settings.kafka, group=None, client_id="test-secrets", fetch_max_bytes=8 << 20)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in sorted(await partitions_of(consumer, topic))]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, 0)
            end = await consumer.end_offsets(tps) if tps else {}
            data = bytearray()
            while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    for r in records:
                        data += (r.key or b"") + (r.value or b"")
            out[f"topic {topic}"] = bytes(data)
        finally:
            await consumer.stop()
    return out


async def _objects(settings) -> dict[str, bytes]:
    from olvm_backup.objectstore import open_store
    async with open_store(settings.s3) as store:
        return {f"object {info.key}": await store.get(info.key) async for info in store.list("")}
