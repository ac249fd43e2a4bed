"""A tag attached in the engine protects a VM with nobody touching the backup product: the scheduler follows the
engine's events, the VM joins the policy that selects the tag and, as the policy says "back up when a VM joins",
is backed up through the pipeline at once, its restore point saying the tag trigger asked. Detaching the tag
under "assign and remove" drops the VM from the policy."""
from __future__ import annotations

import asyncio
import re
import time

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import yaml

from olvm_backup.policy.store import get_policy
from olvm_backup.repository.sealedstore import open_sealed

from .test_cbt_backup import restore_points

POLICY = {
    "name": "gold",
    "description": "what the gold tag protects",
    "selection": {"include": [{"tag": "gold"}]},
    "assignment": "assign_and_remove",
    "on_join": True,
    "exclude_disks": ["app1_os", "app1_scratch"],  # the small data disk alone: quick
    "schedules": [{"name": "nightly", "cron": "0 2 * * *", "timezone": "Europe/Paris", "mode": "incremental"}],
}


def wait_for(what: str, check, timeout: float = 120.0, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def held(pipeline) -> list[str]:
    async def read() -> list[str]:
        async with open_sealed(pipeline.settings) as (store, _):
            return list((await get_policy(store, "gold")).assigned)
    return asyncio.run(read())


def test_a_tag_attached_in_the_engine_backs_the_vm_up_and_detaching_it_drops_the_vm(pipeline, sim, tmp_path,
                                                                                    engine_view):
    policy_file = tmp_path / "gold.yaml"
    policy_file.write_text(yaml.safe_dump(POLICY))
    r = pipeline.cli("policy", "create", "gold", "--file", str(policy_file))
    assert r.returncode == 0, r.stderr
    c = sim.connection
    conn = sdk.Connection(url=c["url"], username=c["username"], password=c["password"], ca_file=c["ca_file"])
    try:
        vms = conn.system_service().vms_service()
        vm = vms.list(search="name=app1")[0]
        tags = vms.vm_service(vm.id).tags_service()
        for tag in [t for t in tags.list() if t.name == "gold"]:  # the inventory tags app1 gold: not yet, here
            tags.tag_service(tag.id).remove()
        pipeline.env.update(OLVM_SCHEDULER_EVENT_POLL="1", OLVM_SCHEDULER_TICK="1")
        pipeline.start("scheduler", "scheduler")
        pipeline.start("auditor", "auditor")
        # The scheduler is following the feed before the tag goes on (it starts from the engine's newest event).
        wait_for("the scheduler to follow the engine's events",
                 lambda: re.search(r"engine events followed \(last event \d+\)", pipeline.cli("status").stdout))
        assert held(pipeline) == []
        tags.add(types.Tag(name="gold"))

        [point] = wait_for("the tag trigger's backup", lambda: restore_points(pipeline, "app1"), timeout=180)
        assert point["mode"] == "full" and set(d["name"] for d in point["disks"]) == {"app1_data"}
        # The restore point says who asked: the policy's tag trigger, and the engine event it followed.
        assert point["requested_by"].startswith("policy gold: tag gold attached to app1"), point["requested_by"]
        assert held(pipeline) == [vm.id]

        tag = next(t for t in tags.list() if t.name == "gold")
        tags.tag_service(tag.id).remove()
        wait_for("the VM to leave the policy", lambda: held(pipeline) == [])
        # The audit trail has it all: the request with its cause, the policy's changes.
        history = wait_for("the audit trail", lambda: (lambda r: r.returncode == 0 and "vm_left" in r.stdout and r)(
            pipeline.cli("history", "--policy", "gold", "--json")), timeout=60, every=2.0)
        assert "tag gold attached to app1" in history.stdout, history.stdout
    finally:
        conn.close()
    assert engine_view.leftovers() == []
