"""Disks seeded with real file systems (issue 22): an MBR disk and a GPT disk, each with ext4, XFS, FAT, NTFS and
ext4 on LVM, checked from a full backup's download with the file systems' own tools; then the guest replaces a file and
removes another, and the incremental backup's dirty extents hold only those few blocks.

The full backup is a module fixture, so each test runs alone or in any order."""
from __future__ import annotations

import json

import ovirtsdk4.types as types
import pytest
from ovirt_imageio import client

from sim.client import SimAdmin

from tests import guest_fs
from tests.guest_fs import MIB
from .conftest import finalize_transfer, qemu_img, start_sim, vm_by_name, vm_disks, wait_disk_ok
from .test_backup import backups_service, download_transfer, finalize_backup, wait_ready

VM = "fsvm"
DISKS = {"fs_mbr": "mbr", "fs_gpt": "gpt"}
NEW_TEXT = "replaced between the backups\n"


@pytest.fixture(scope="module")
def inv():
    return guest_fs.inventory(VM, [guest_fs.disk(name, table, 64) for name, table in DISKS.items()])


@pytest.fixture(scope="module")
def sim(tmp_path_factory, inv):
    s = start_sim(tmp_path_factory.mktemp("sim"), guest_fs.write_inventory(tmp_path_factory.mktemp("inv") / "i.yaml",
                                                                           inv))
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def state(sim, connection, tmp_path_factory) -> dict:
    """A full backup of both seeded disks, each downloaded raw (state["<disk>.full"]) with the layout the guest had
    then (state["<disk>.layout"]), its checkpoint, the VM and its disks; state["dir"] is the module's scratch
    directory."""
    state = {"dir": tmp_path_factory.mktemp("fsbackups")}
    admin = SimAdmin(sim.data)
    state.update({f"{name}.layout": admin.filesystems(VM, name) for name in DISKS})
    vm = vm_by_name(connection, VM)
    disks = vm_disks(connection, vm)
    backups = backups_service(connection, vm)
    svc = backups.backup_service(backups.add(types.Backup(disks=[types.Disk(id=d.id) for d in disks.values()])).id)
    backup = wait_ready(svc)
    state["cp1"], state["vm"], state["disks"] = backup.to_checkpoint_id, vm, disks
    for name in DISKS:
        state[f"{name}.full"] = _download(connection, sim, disks[name], backup.id, state["dir"] / f"{name}.full.raw",
                                          fmt="raw")
    finalize_backup(svc)
    for d in disks.values():
        wait_disk_ok(connection, d.id, timeout=30)
    return state


def _download(connection, sim, disk, backup_id, dest, **kw):
    t = download_transfer(connection, disk.id, backup_id)
    client.download(t.transfer_url, str(dest), sim.ca_file, proxy_url=t.proxy_url, **kw)
    finalize_transfer(connection, t)
    return dest


def test_seeded_file_systems(inv, state):
    for name, table in DISKS.items():
        raw, layout = state[f"{name}.full"], state[f"{name}.layout"]
        spec = next(d for d in inv["vms"][0]["disks"] if d["name"] == name)["filesystems"]
        assert layout["table"] == table

        # The partition table as sfdisk reads it: the label, one partition per volume (and MBR's extended one).
        pt = guest_fs.sfdisk_json(raw)
        assert pt["label"] == {"mbr": "dos", "gpt": "gpt"}[table]
        parts = {int(p["node"][len(str(raw)):]): p for p in pt["partitions"]}
        volumes = layout["volumes"]
        assert [v["name"] for v in volumes] == [v["name"] for v in spec["volumes"]]
        expected_numbers = [1, 2, 3, 5, 6] if table == "mbr" else [1, 2, 3, 4, 5]
        assert [v["partition"] for v in volumes] == expected_numbers
        assert set(parts) == set(expected_numbers) | ({4} if table == "mbr" else set())
        if table == "mbr":
            assert parts[4]["type"] == "5", "partition 4 is the extended partition holding the logical ones"
        for vol, want in zip(volumes, spec["volumes"], strict=True):
            part = parts[vol["partition"]]
            assert part["start"] * 512 == vol["start"] and part["size"] * 512 == int(want["size"][:-3]) * MIB
            if table == "gpt":
                assert part["name"] == vol["name"]
            kind = "lvm" if vol["lvm"] else vol["fs"]
            # The file system (or the LVM PV, and the file system on its LV) where the table says.
            probe = guest_fs.blkid(raw, vol["start"])
            if kind == "lvm":
                assert probe["TYPE"] == "LVM2_member", probe
                assert vol["fs_offset"] > vol["start"]
            probe = guest_fs.blkid(raw, vol["fs_offset"])
            assert probe["TYPE"] == guest_fs.BLKID_TYPE[kind], (name, vol["name"], probe)
            image = guest_fs.extract(raw, vol["fs_offset"], vol["fs_size"], state["dir"] / f"{name}-{kind}.img")
            guest_fs.fsck(kind, image)
            # Every seeded file, with the content the inventory describes (the tools that can read it back).
            tree = {e["path"]: e for e in vol["files"]}
            for e in want["files"]:
                path = e["path"].strip("/")
                got = guest_fs.read_file(kind, image, path) if tree[path]["type"] == "file" else None
                if tree[path]["type"] == "file" and kind != "xfs":
                    assert got is not None and guest_fs.sha256(got) == tree[path]["sha256"], (name, kind, path)
                if kind in ("ext4", "lvm") and tree[path]["type"] != "symlink":
                    st = guest_fs.ext4_stat(image, path)
                    assert st["mode"] & 0o7777 == tree[path]["mode"] and st["mtime"] == tree[path]["mtime"], path
            if kind == "xfs":  # no tool reads an XFS file without mounting: its directory entries at least
                listing = guest_fs.run("xfs_db", "-r", "-c", "ls /data/nested/deeper", "-c", "ls /etc",
                                       str(image), text=True).stdout
                assert "notes.txt" in listing and "symlink" in listing and "hostname" in listing, listing
            if kind in ("ext4", "lvm"):
                listing = guest_fs.run("debugfs", "-R", "ls -p /etc", str(image), text=True).stdout
                assert "/link/" in listing


def test_guest_replaces_a_file(sim, connection, state):
    admin = SimAdmin(sim.data)
    vm, disks = state["vm"], state["disks"]
    before = {name: admin.filesystems(VM, name) for name in DISKS}
    mbr_sum = admin.checksum(VM, "fs_mbr")
    # On the GPT disk only: each volume's docs/readme.txt replaced; on ext4, etc/secret.conf removed as well.
    for vol in before["fs_gpt"]["volumes"]:
        admin.put_file(VM, "fs_gpt", vol["name"], "docs/readme.txt", text=NEW_TEXT, mtime=1700000500)
    sim.cli("remove-file", VM, "fs_gpt", "ext4", "etc/secret.conf")  # the same from the shell
    assert admin.checksum(VM, "fs_mbr") == mbr_sum, "the other disk changed"

    backups = backups_service(connection, vm)
    svc = backups.backup_service(backups.add(types.Backup(
        from_checkpoint_id=state["cp1"], disks=[types.Disk(id=d.id) for d in disks.values()])).id)
    backup = wait_ready(svc)
    for name, d in disks.items():
        t = download_transfer(connection, d.id, backup.id)
        with client.ImageioClient(t.transfer_url, cafile=sim.ca_file, proxy_url=t.proxy_url) as c:
            dirty = [(e.start, e.start + e.length) for e in c.extents("dirty") if e.dirty]
        if name == "fs_mbr":
            finalize_transfer(connection, t)
            assert dirty == [], f"nothing changed on {name}, yet dirty: {dirty}"
            continue
        # A few blocks per volume, each inside a volume that changed.
        total = sum(end - start for start, end in dirty)
        assert 0 < total <= 5 * 256 * 1024, f"{total} dirty bytes for five small files: {dirty}"
        ranges = [(v["fs_offset"], v["fs_offset"] + v["fs_size"]) for v in before[name]["volumes"]]
        for start, end in dirty:
            assert any(lo <= start and end <= hi for lo, hi in ranges), f"dirty {start}-{end} outside the volumes"
        assert all(any(lo <= s < hi for s, _ in dirty) for lo, hi in ranges), "a changed volume has no dirty block"
        incr = state["dir"] / f"{name}.incr.qcow2"
        full_qcow2 = state["dir"] / f"{name}.full.qcow2"
        qemu_img("convert", "-f", "raw", "-O", "qcow2", str(state[f"{name}.full"]), str(full_qcow2))
        client.download(t.transfer_url, str(incr), sim.ca_file, proxy_url=t.proxy_url, incremental=True,
                        backing_file=str(full_qcow2), backing_format="qcow2")
        finalize_transfer(connection, t)
        raw = state["dir"] / f"{name}.incr.raw"
        qemu_img("convert", "-O", "raw", str(incr), str(raw))
        after = json.loads(sim.cli("filesystems", VM, name))
        for vol, old in zip(after["volumes"], before[name]["volumes"], strict=True):
            kind = "lvm" if vol["lvm"] else vol["fs"]
            image = guest_fs.extract(raw, vol["fs_offset"], vol["fs_size"], state["dir"] / f"{name}-{kind}.2.img")
            guest_fs.fsck(kind, image)
            new = guest_fs.read_file(kind, image, "docs/readme.txt")
            if kind != "xfs":
                assert new == NEW_TEXT.encode(), (kind, new)
                old_blob = next(e for e in old["files"] if e["path"] == "data/blob.bin")
                assert guest_fs.sha256(guest_fs.read_file(kind, image, "data/blob.bin")) == old_blob["sha256"]
            entry = next(e for e in vol["files"] if e["path"] == "docs/readme.txt")
            assert entry["sha256"] == guest_fs.sha256(NEW_TEXT.encode()) and entry["mtime"] == 1700000500
        ext4 = guest_fs.extract(raw, after["volumes"][0]["fs_offset"], after["volumes"][0]["fs_size"],
                                state["dir"] / "ext4.3.img")
        assert guest_fs.read_file("ext4", ext4, "etc/secret.conf") is None
        assert guest_fs.read_file("ext4", ext4, "etc/hostname") == b"fs_gpt-ext4\n"
        assert guest_fs.ext4_stat(ext4, "docs/readme.txt")["mtime"] == 1700000500
        assert "etc/secret.conf" not in {e["path"] for e in after["volumes"][0]["files"]}
    finalize_backup(svc)
    for d in disks.values():
        wait_disk_ok(connection, d.id, timeout=30)
