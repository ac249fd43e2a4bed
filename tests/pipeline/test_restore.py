"""Restores through the restorer service against the simulator: every restore point of a chain, configuration
kept, power state as asked, other cluster and storage domain, a single disk into an existing VM, a VM replaced
in place, and a corrupt pack that verify reports and restore refuses (leaving a VM it was to replace untouched)."""
from __future__ import annotations

import asyncio

import pytest

from olvm_backup.repository.sealedstore import open_sealed
from olvm_backup.repository import catalog

from .conftest import IMAGEIO_LOGGED, IMAGEIO_PATH
from .test_cbt_backup import backup, restore_points

MIB = 1024 * 1024
DISKS = ("app1_os", "app1_data", "app1_scratch")


def restore(pipeline, point: str, *args: str):
    return pipeline.cli("restore", point, "--wait", *args)


def vm_config(engine_view, name: str) -> dict:
    """What an admin compares after a restore: CPU, memory, OS, NICs, disk layout, status, placement."""
    def read(system):
        [vm] = system.vms_service().list(search=f"name={name}", case_sensitive=True)
        vs = system.vms_service().vm_service(vm.id)
        disks = {}
        for a in vs.disk_attachments_service().list():
            d = system.disks_service().disk_service(a.disk.id).get()
            disks[d.alias] = {"size": d.provisioned_size, "format": d.format.value, "interface": a.interface.value,
                              "bootable": a.bootable, "active": a.active, "sd": d.storage_domains[0].id,
                              "id": d.id}
        cluster = system.clusters_service().cluster_service(vm.cluster.id).get().name
        nics = sorted((n.name, n.interface.value) for n in vs.nics_service().list())
        t = vm.cpu.topology
        return {"id": vm.id, "status": vm.status.value, "memory": vm.memory, "os": vm.os.type,
                "cpu": (t.sockets, t.cores, t.threads), "nics": nics, "disks": disks, "cluster": cluster}
    return engine_view.call(read)


def storage_domain_id(engine_view, name: str) -> str:
    return engine_view.call(lambda s: s.storage_domains_service().list(search=f"name={name}")[0].id)


@pytest.mark.data_path
def test_every_restore_point_restores_as_it_was(pipeline, admin, engine_view):
    expected = []
    for step in range(3):
        if step:
            admin.write("app1", "app1_os", (200 + step * 50) * MIB, 4 * MIB, seed=step)
            admin.write("app1", "app1_scratch", step * MIB, 512 * 1024, seed=step + 10)
        backup(pipeline, "app1")
        expected.append({d: admin.checksum("app1", d) for d in DISKS})
    points = restore_points(pipeline, "app1")
    assert [p["mode"] for p in points] == ["full", "incremental", "incremental"]
    source = vm_config(engine_view, "app1")
    for i, point in enumerate(points):
        name = f"app1-r{i}"
        extra = ["--power-on"] if i == 2 else []
        r = restore(pipeline, point["backup_id"], "--name", name, *extra)
        assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
        assert "the restore point's file systems: frozen" in r.stderr, r.stderr  # app1's guest agent froze them
        for disk in DISKS:
            assert admin.checksum(name, disk) == expected[i][disk], f"{name}/{disk} differs from restore point {i}"
        restored = vm_config(engine_view, name)
        assert restored["id"] != source["id"]
        for key in ("memory", "os", "cpu", "nics", "cluster"):
            assert restored[key] == source[key], key
        layout = lambda c: {k: {f: v[f] for f in ("size", "format", "interface", "bootable", "active", "sd")}
                            for k, v in c["disks"].items()}
        assert layout(restored) == layout(source)
        assert restored["status"] == ("up" if i == 2 else "down")
    assert engine_view.leftovers() == []
    assert pipeline.data_paths("restorer") == {IMAGEIO_LOGGED[IMAGEIO_PATH]}


def test_restore_to_another_cluster_and_storage_domain(pipeline, admin, engine_view):
    backup(pipeline, "app1", "--exclude", "app1_scratch")
    [point] = restore_points(pipeline, "app1")
    r = restore(pipeline, point["backup_id"], "--name", "app1-moved", "--cluster", "Other",
                "--storage-domain", "data2")
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    moved = vm_config(engine_view, "app1-moved")
    assert moved["cluster"] == "Other"
    assert {d["sd"] for d in moved["disks"].values()} == {storage_domain_id(engine_view, "data2")}
    for disk in ("app1_os", "app1_data"):
        assert admin.checksum("app1-moved", disk) == admin.checksum("app1", disk)

    # One disk into an existing VM.
    r = restore(pipeline, point["backup_id"], "--target-vm", "proxy1", "--disk", "app1_data")
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    assert list(vm_config(engine_view, "proxy1")["disks"]) == ["app1_data"]
    assert admin.checksum("proxy1", "app1_data") == admin.checksum("app1", "app1_data")
    assert engine_view.leftovers() == []


def _corrupt_a_chunk_of(settings, backup_id: str, disk: str) -> str:
    """Flip one byte inside a chunk that only `disk` uses, in the pack that holds it: the damage is that disk's,
    whatever else the pack holds (a pack may hold the other disks' chunks too, or none of this one's)."""
    async def corrupt() -> str:
        async with open_sealed(settings, ensure_bucket=False) as (store, _):
            manifest = await catalog.find(store, backup_id)
            others = set().union(*(d.map.digests() for d in manifest.disks if d.name != disk))
            digest = min(manifest.disk(disk).map.digests() - others)
            where = manifest.chunks[digest]
            body = bytearray(await store.get(where.pack_key))
            body[where.offset + where.length // 2] ^= 0xFF
            await store.put(where.pack_key, bytes(body))
            return where.pack_key
    return asyncio.run(corrupt())


def test_a_corrupt_pack_is_reported_and_never_restored(pipeline, admin, engine_view):
    backup(pipeline, "app1", "--exclude", "app1_scratch")
    [point] = restore_points(pipeline, "app1")
    assert pipeline.cli("verify", point["backup_id"]).returncode == 0
    pack_key = _corrupt_a_chunk_of(pipeline.settings, point["backup_id"], "app1_os")
    r = pipeline.cli("verify", point["backup_id"])
    assert r.returncode != 0
    report = r.stdout + r.stderr
    assert "corrupt" in report.lower() and "app1_os" in report and "offset" in report.lower(), report
    assert f"in pack {pack_key}" in report, report
    damaged = {line.split()[2] for line in r.stderr.splitlines() if line.startswith("DAMAGED disk ")}
    assert damaged == {"app1_os"}, report
    r = restore(pipeline, point["backup_id"], "--name", "app1-bad")
    assert r.returncode != 0
    assert "corrupt" in (r.stdout + r.stderr).lower(), r.stdout + r.stderr
    vms = engine_view.call(lambda s: [v.name for v in s.vms_service().list()])
    assert "app1-bad" not in vms, "a failed restore leaves no half-restored VM"

    # A replace that cannot restore the data never removes the VM it was to replace.
    original = vm_config(engine_view, "app1")
    contents = {d: admin.checksum("app1", d) for d in DISKS}
    r = restore(pipeline, point["backup_id"], "--replace")
    assert r.returncode != 0 and "corrupt" in (r.stdout + r.stderr).lower(), r.stdout + r.stderr
    assert vm_config(engine_view, "app1") == original
    assert {d: admin.checksum("app1", d) for d in DISKS} == contents
    assert engine_view.leftovers() == []


def test_replace_puts_the_restore_point_back_in_place(pipeline, admin, engine_view):
    backup(pipeline, "app1")
    [point] = restore_points(pipeline, "app1")
    expected = {d: admin.checksum("app1", d) for d in DISKS}
    original = vm_config(engine_view, "app1")
    admin.write("app1", "app1_os", 300 * MIB, 4 * MIB, seed=77)  # the change the admin wants undone
    assert admin.checksum("app1", "app1_os") != expected["app1_os"]
    r = restore(pipeline, point["backup_id"], "--replace")
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    replaced = vm_config(engine_view, "app1")
    assert replaced["id"] == original["id"]
    for key in ("memory", "os", "cpu", "nics", "cluster"):
        assert replaced[key] == original[key], key
    layout = lambda c: {k: {f: v[f] for f in ("size", "format", "interface", "bootable", "active", "sd")}
                        for k, v in c["disks"].items()}
    assert layout(replaced) == layout(original)
    assert {d: admin.checksum("app1", d) for d in DISKS} == expected
    assert engine_view.call(lambda s: [v.name for v in s.vms_service().list()]).count("app1") == 1
    assert engine_view.leftovers() == []
