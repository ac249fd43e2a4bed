"""The API against the simulator and the pipeline: a backup asked for by an operator completes and its progress
stream reaches the end; the restore point, the VM's protection state, the history, the restore point's files and a
download are then what the API shows; a restore makes a new VM and powers it on; snapshots are taken and removed;
an engine account logs in through the engine's SSO; bad input is a 4xx naming the field, never a 500. One
simulator, one pipeline and one API for the module; a VM with one 8 MiB disk holding ext4."""
from __future__ import annotations

import hashlib
import time

import pytest

from tests.pipeline.conftest import EngineView, module_sim
from tests.services.api.apiserver import pipeline_with_api

VM, DISK = "api1", "api1_os"


INVENTORY = f"""
clusters: [{{name: Default}}]
storage_domains: [{{name: data1}}]
vms:
  - name: {VM}
    status: up
    disks:
      - name: {DISK}
        size: 8MiB
        bootable: true
        filesystems:
          table: gpt
          volumes: [{{name: root, fs: ext4, size: 6MiB,
                      files: [{{path: srv/report.bin, pattern: random, seed: 3, size: 300KiB, mode: "0640"}}]}}]
"""


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    yield from module_sim(tmp_path_factory, INVENTORY)


@pytest.fixture(scope="module")
def engine_view(sim) -> EngineView:
    return EngineView(sim)


@pytest.fixture(scope="module")
def stack(broker, moto_endpoint, sim, tmp_path_factory):
    """The snapshotter, a reader, a writer, the restorer and the auditor, and the API, on one prefix and bucket;
    the simulator's engine account logs in through the engine's SSO, as an operator."""
    yield from pipeline_with_api(broker, moto_endpoint, sim, tmp_path_factory.mktemp("api-pipeline"), api=dict(
        login_attempts=2, engine_users=f"{sim.connection['username']}=operator,nobody@internal=admin"))


@pytest.fixture(scope="module")
def backed_up(stack):
    """A full backup of the VM asked for through the API by an operator, and every event its stream sent."""
    token = stack.client.token("oper")
    r = stack.client.request("POST", "/api/backups", {"vm": VM, "mode": "full"}, token=token)
    assert r.status == 202, r.body
    asked = r.json()
    events = list(stack.client.stream(asked["events"], token=token, timeout=180))
    return asked["request_id"], events


def test_a_backup_started_through_the_api_completes_and_its_stream_reaches_the_end(stack, backed_up):
    request_id, events = backed_up
    kinds = [data["kind"] for _, data in events]
    assert kinds[-1] == "completed", events[-1]
    assert "accepted" in kinds and "started" in kinds
    assert all(data["request_id"] == request_id for _, data in events)
    percents = [data["percent"] for _, data in events if data["kind"] == "progress" and "percent" in data]
    assert percents and percents == sorted(percents) and percents[-1] == 100.0
    final = events[-1][1]
    assert final["outcome"]["bytes_read"] >= 300 * 1024 and final["backup_id"]  # the file, at least
    token = stack.client.token("oper")
    # the stream again, once the job ended: the same events, and it ends at once
    again = list(stack.client.stream(f"/api/jobs/{request_id}/events", token=token, timeout=30))
    assert [d for _, d in again] == [d for _, d in events]
    resumed = list(stack.client.stream(f"/api/jobs/{request_id}/events", token=token, timeout=30,
                                       last_event_id=len(events) - 2))  # a browser reconnecting: the rest only
    assert [d for _, d in resumed] == [events[-1][1]]
    assert list(stack.client.stream(f"/api/jobs/{request_id}/events", token=token, timeout=30,
                                    last_event_id=len(events) - 1)) == []

    points = stack.client.request("GET", f"/api/restore-points?vm={VM}", token=token).json()
    assert [p["backup_id"] for p in points] == [final["backup_id"]]
    point = points[0]
    assert point["size"] == 8 * 1024 * 1024 and point["strategy"] == "cbt" and point["mode"] == "full"
    assert [d["name"] for d in point["disks"]] == [DISK]

    deadline = time.monotonic() + 30  # the auditor writes the trail in batches
    while True:
        vm = stack.client.request("GET", f"/api/vms/{VM}", token=token).json()
        if vm["last_result"] is not None or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert vm["protected"] and vm["last_restore_point"]["backup_id"] == final["backup_id"]
    assert vm["last_result"]["outcome"] == "completed" and vm["last_result"]["request_id"] == request_id
    history = stack.client.request("GET", f"/api/history?vm={VM}", token=token).json()
    asked = [h for h in history if h["what"] == "backup requested"]
    assert asked and asked[0]["by"] == "api:oper" and asked[0]["outcome"] == "completed"


def test_the_files_of_a_restore_point_are_listed_and_downloaded_as_the_guest_has_them(stack, sim, backed_up):
    from sim.client import SimAdmin

    backup_id = backed_up[1][-1][1]["backup_id"]
    seeded = {f["path"]: f for f in SimAdmin(sim.data).filesystems(VM, DISK)["volumes"][0]["files"]}["srv/report.bin"]
    token = stack.client.token("oper")
    base = f"/api/restore-points/{backup_id}"
    disks = stack.client.request("GET", f"{base}/files?path=/", token=token).json()
    assert [(e["name"], e["type"], e["size"]) for e in disks] == [(DISK, "dir", 8 * 1024 * 1024)]
    listed = stack.client.request("GET", f"{base}/files?path=/{DISK}/p1/srv", token=token)
    assert listed.status == 200, listed.body
    (entry,) = [e for e in listed.json() if e["name"] == "report.bin"]
    assert (entry["type"], entry["size"], entry["mode"]) == ("file", 300 * 1024, "0640")
    got = stack.client.request("GET", f"{base}/download?path=/{DISK}/p1/srv/report.bin", token=token)
    assert got.status == 200
    assert got.headers["Content-Disposition"] == "attachment; filename*=UTF-8''report.bin"
    assert hashlib.sha256(got.body).hexdigest() == seeded["sha256"]
    refused = stack.client.request("GET", f"{base}/download?path=/{DISK}/p1/srv", token=token)
    assert (refused.status, refused.json()["field"]) == (404, "path")


def _refused(stack, method, path, body=None, raw=None, user="admin"):
    r = stack.client.request(method, path, body, raw=raw, token=stack.client.token(user))
    assert 400 <= r.status < 500, (method, path, r.status, r.body)
    return r.status, r.json()


def test_bad_input_is_a_4xx_naming_the_field(stack, backed_up):
    backup_id = backed_up[1][-1][1]["backup_id"]
    cases = [
        (("POST", "/api/backups", {"vm": "no-such-vm"}), 404, "vm"),
        (("POST", "/api/backups", None, b"{not json"), 400, "body"),
        (("POST", "/api/backups", {"vm": VM, "mode": "sideways"}), 400, "mode"),
        (("POST", "/api/backups", {"vm": VM, "exclude_disks": "os"}), 400, "exclude_disks"),
        (("POST", "/api/backups", {}), 400, "vm"),
        (("POST", "/api/restores", {"restore_point": "no-such-point"}), 404, "restore_point"),
        (("POST", "/api/restores", {"restore_point": backup_id, "name": VM}), 409, "name"),
        (("POST", "/api/restores", {"restore_point": backup_id, "disks": ["nope"]}), 404, "disks[0]"),
        (("POST", "/api/restores", {"restore_point": backup_id, "power_on": "yes"}), 400, "power_on"),
        (("GET", "/api/restore-points/no-such-point"), 404, "restore_point"),
        (("GET", f"/api/restore-points/{backup_id}/files?path=/nope"), 404, "path"),
        (("GET", f"/api/restore-points/{backup_id}/download"), 400, "path"),
        (("GET", "/api/jobs/no-such-request"), 404, "request_id"),
        (("GET", "/api/history?since=soon"), 400, "since"),
        (("POST", "/api/policies", {"name": "Not A Name"}), 400, "name"),
        (("POST", "/api/policies", {"name": "p1", "schedules": "daily"}), 400, "schedules"),
        (("GET", "/api/policies/nope"), 404, "name"),
    ]
    for args, status, field in cases:
        got, body = _refused(stack, *args)
        assert (got, body.get("field")) == (status, field), (args, body)
        assert body["error"]
    created = stack.client.request("POST", "/api/policies", {"name": "p1", "vms": [VM]},
                                   token=stack.client.token("admin"))
    assert created.status == 201, created.body
    got, body = _refused(stack, "POST", "/api/policies", {"name": "p1"})
    assert (got, body["field"]) == (409, "name")
    assert "Traceback" not in stack.log.read_text()


def test_a_restore_asked_for_through_the_api_makes_the_new_vm_and_powers_it_on(stack, backed_up, engine_view):
    backup_id = backed_up[1][-1][1]["backup_id"]
    token = stack.client.token("oper")
    r = stack.client.request("POST", "/api/restores", {"restore_point": backup_id, "name": f"{VM}-copy",
                                                        "disks": [DISK], "power_on": True}, token=token)
    assert r.status == 202, r.body
    events = [d for _, d in stack.client.stream(r.json()["events"], token=token, timeout=180)]
    assert events[-1]["kind"] == "completed", events[-1]
    assert events[-1]["job"] == "restore" and events[-1]["outcome"]["disks"] == [DISK]
    status = engine_view.call(lambda system: [vm.status.value for vm in system.vms_service().list()
                                              if vm.name == f"{VM}-copy"])
    assert status == ["up"]
    again = stack.client.request("POST", "/api/restores", {"restore_point": backup_id, "name": f"{VM}-copy"},
                                 token=token)
    assert (again.status, again.json()["field"]) == (409, "name")  # the name is taken now


def test_an_operator_takes_lists_and_removes_a_snapshot(stack, engine_view):
    token = stack.client.token("oper")
    base = f"/api/vms/{VM}/snapshots"
    taken = stack.client.request("POST", base, {"description": "before the upgrade"}, token=token)
    assert taken.status == 201, taken.body
    snapshot_id = taken.json()["snapshot_id"]
    listed = stack.client.request("GET", base, token=token).json()["snapshots"]
    mine = [s for s in listed if s["snapshot_id"] == snapshot_id]
    assert mine and mine[0]["ours"] and "before the upgrade" in mine[0]["description"]
    assert mine[0]["disks"] == [DISK]
    assert snapshot_id in engine_view.call(lambda system: [  # the engine's own list, through the SDK
        s.id for s in system.vms_service().vm_service(_vm_id(system)).snapshots_service().list()])
    forced = stack.client.request("DELETE", f"{base}/{snapshot_id}?force=true", token=token)
    assert (forced.status, forced.json()["field"]) == (403, "force")
    removed = stack.client.request("DELETE", f"{base}/{snapshot_id}", token=token)
    assert removed.status == 200, removed.body
    assert snapshot_id not in [s["snapshot_id"] for s in stack.client.request("GET", base, token=token).json()[
        "snapshots"]]
    assert (stack.client.request("GET", "/api/vms/no-such-vm/snapshots", token=token).json()["field"]) == "vm"


def _vm_id(system) -> str:
    return next(vm.id for vm in system.vms_service().list() if vm.name == VM)


def test_an_engine_account_logs_in_through_the_engines_sso_with_its_configured_role(stack, sim):
    name, password = sim.connection["username"], sim.connection["password"]
    r = stack.client.login(name, password)
    assert r.status == 200, r.body
    assert r.json()["role"] == "operator"
    token = r.json()["token"]
    assert stack.client.request("GET", "/api/me", token=token).json()["user"] == name
    refused = stack.client.request("DELETE", "/api/policies/p1", token=token)
    assert refused.status == 403
    assert stack.client.login(name, "not-the-engine-password").status == 401
    assert stack.client.login("nobody@internal", password).status == 401  # named, but the engine refuses it
    assert stack.client.login(name, password).status == 429  # OLVM_API_LOGIN_ATTEMPTS=2 from this address
    assert password not in stack.log.read_text()
