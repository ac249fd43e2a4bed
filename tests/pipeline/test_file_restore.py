"""File-level restore end to end (issue 22): a VM whose MBR disk and GPT disk each hold ext4, XFS, FAT, NTFS and ext4
on LVM, backed up through the pipeline; `olvm-backup files` lists, reads and copies out exactly the trees the
inventory seeded, a file the guest replaced between a full and an incremental reads old in one and new in the other,
and a damaged chunk under a file is said with the restore point, disk and offset.

One simulator and pipeline for the module; the full and the incremental backup are module fixtures, so each test
runs alone or in any order (the damaged chunk is mended after its test)."""
from __future__ import annotations

import concurrent.futures
import hashlib
import json
import tarfile

import pytest
import yaml

from tests import guest_fs
from tests.restore_points import corrupt_chunk_at

from .conftest import Pipeline, init_repository, module_sim, pipeline_settings, prepare_topics

VM = "filevm"
DISKS = {"fs_mbr": "mbr", "fs_gpt": "gpt"}
MIB = 1 << 20
# What a file system holds beyond the seeded tree: its own entries at the root.
OWN_ENTRIES = {"ext4": {"lost+found"}, "lvm": {"lost+found"}, "xfs": set(), "fat": set(), "ntfs": set()}
# What each can keep of an entry (FAT: no modes, owners or symlinks, mtimes in 2-second steps; NTFS as ntfs-3g
# seeds it: no POSIX modes, no symlinks).
KEEPS_MODES = {"ext4", "xfs", "lvm"}
MTIME_STEP = {"fat": 2}


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    inv = guest_fs.inventory(VM, [guest_fs.disk(name, table, 64) for name, table in DISKS.items()])
    yield from module_sim(tmp_path_factory, yaml.safe_dump(inv, sort_keys=False))


@pytest.fixture(scope="module")
def pipeline(broker, moto_endpoint, sim, tmp_path_factory) -> Pipeline:
    """The services a backup needs, once for the module: the tests read what the earlier ones backed up."""
    logs = tmp_path_factory.mktemp("file-restore")
    settings = pipeline_settings(broker, moto_endpoint, sim, logs / "data", task_size=16 * MIB)
    prepare_topics(settings)
    init_repository(settings)
    p = Pipeline(settings, logs)
    for name in ("snapshotter", "reader", "writer"):
        p.start(name, name)
    yield p
    p.stop_all()


@pytest.fixture(scope="module")
def full(pipeline, admin) -> dict:
    """A full backup of the VM as seeded: its restore point id and the seeded volumes (seeded())."""
    volumes = seeded(admin)
    return {"rp": backup(pipeline, "--mode", "full")["backup_id"], "seeded": volumes}


@pytest.fixture(scope="module")
def incremental(pipeline, admin, full) -> dict:
    """An incremental after the guest replaced docs/readme.txt in every volume: its restore point id and the new
    content of each volume's readme (by volume path)."""
    new = {}
    for path, vol in full["seeded"].items():
        new[path] = f"replaced in {path} between the backups\n".encode()
        admin.put_file(VM, path.split("/")[1], vol["name"], "docs/readme.txt", text=new[path].decode(),
                       mtime=1700001000)
    point = backup(pipeline)
    assert point["mode"] == "incremental", point
    return {"rp": point["backup_id"], "new": new}


def cli(pipeline, *args: str) -> str:
    r = pipeline.cli(*args)
    assert r.returncode == 0, f"olvm-backup {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def backup(pipeline, *args: str) -> dict:
    cli(pipeline, "backup", VM, "--wait", *args)
    points = json.loads(cli(pipeline, "backups", VM, "--json"))
    return max(points, key=lambda p: p["completed_at"])


def kind(vol: dict) -> str:
    return "lvm" if vol["lvm"] else vol["fs"]


def volume_path(disk: str, vol: dict) -> str:
    """/<disk>/<volume> as olvm-backup files names it: pN for partition N, <vg>-<lv> for a logical volume."""
    if vol["lvm"]:
        vg, lv = (vol["lvm"][k].replace("-", "--") for k in ("vg", "lv"))
        return f"/{disk}/{vg}-{lv}"
    return f"/{disk}/p{vol['partition']}"


def seeded(admin) -> dict[str, dict]:
    """Every volume of both disks as the guest has it now: /<disk>/<volume> -> the sim's layout of it."""
    return {volume_path(disk, vol): vol for disk in DISKS for vol in admin.filesystems(VM, disk)["volumes"]}


def expected_tree(vol: dict) -> dict[str, dict]:
    return {e["path"]: e for e in vol["files"]}


def check_entry(where: str, fs: str, want: dict, *, type_: str, mode: int | None, mtime: float | None,
                target: str | None, size: int | None = None) -> None:
    assert type_ == want["type"], f"{where}: a {type_}, seeded as a {want['type']}"
    if want["type"] == "file" and size is not None:
        assert size == want["size"], where
    if want["type"] == "symlink":
        assert target == want["target"], where
    if fs in KEEPS_MODES and want["type"] != "symlink":
        assert mode is not None and mode & 0o7777 == want["mode"], f"{where}: mode {mode!r}, seeded {want['mode']:o}"
    assert mtime is not None and abs(mtime - want["mtime"]) < MTIME_STEP.get(fs, 1), \
        f"{where}: mtime {mtime}, seeded {want['mtime']}"


def test_full_backup_files_are_the_seeded_trees(pipeline, full, tmp_path):
    rp, volumes = full["rp"], full["seeded"]

    # The CLI runs side by side (each run opens the restore point afresh): ls of the disks, of their volumes and of
    # each volume's /etc, find of every path, get into a directory and into a tar.
    dirs, tar_file = tmp_path / "dir", tmp_path / "all.tar"
    calls = {("ls", "/"): ("ls", "/", "--json"), ("find",): ("find", "*"),
             ("get",): ("get", *[f"/{d}" for d in DISKS], "--output", str(dirs)),
             ("tar",): ("get", *[f"/{d}" for d in DISKS], "--tar", str(tar_file)),
             **{("ls", f"/{d}"): ("ls", f"/{d}", "--json") for d in DISKS},
             **{("ls", f"{p}/etc"): ("ls", f"{p}/etc", "--json") for p in volumes}}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        runs = dict(zip(calls, pool.map(lambda args: cli(pipeline, "files", rp, *args), calls.values()), strict=True))

    # ls: the disks, their volumes, and each volume's /etc as seeded.
    assert {e["name"] for e in json.loads(runs["ls", "/"])} == set(DISKS)
    for disk in DISKS:
        listed = {e["name"] for e in json.loads(runs["ls", f"/{disk}"])}
        mine = {p.rsplit("/", 1)[1] for p in volumes if p.startswith(f"/{disk}/")}
        assert mine <= listed, f"{disk}: volumes {sorted(listed)}, expected {sorted(mine)} among them"
    for path, vol in volumes.items():
        fs, tree = kind(vol), expected_tree(vol)
        entries = json.loads(runs["ls", f"{path}/etc"])
        names = {e["name"] for e in entries}
        assert names == {p.split("/", 1)[1] for p in tree if p.startswith("etc/")}, (path, names)
        for e in entries:
            check_entry(f"{path}/etc/{e['name']}", fs, tree[f"etc/{e['name']}"], type_=e["type"], size=e["size"],
                        mode=int(e["mode"], 8) if e["mode"] else None, mtime=e["mtime"], target=e["target"])

    # find: every path of every volume, no more (but each file system's own entries), no less.
    found = set(runs["find",].split())
    for path, vol in volumes.items():
        here = {f[len(path) + 1:] for f in found if f.startswith(path + "/")}
        extra = {p for p in here - set(expected_tree(vol)) if p.split("/")[0] not in OWN_ENTRIES[kind(vol)]
                 and not (kind(vol) == "ntfs" and p.startswith("$"))}
        assert extra == set() and set(expected_tree(vol)) <= here, (path, extra, set(expected_tree(vol)) - here)

    # get: every file of both disks, byte for byte.
    for path, vol in volumes.items():
        for rel, want in expected_tree(vol).items():
            if want["type"] == "file":
                got = hashlib.sha256((dirs / path.lstrip("/") / rel).read_bytes()).hexdigest()
                assert got == want["sha256"], f"{path}/{rel}"

    # get --tar: the same files with their modes, times and symlinks, as far as each file system keeps them.
    with tarfile.open(tar_file) as tar:
        members = {m.name.strip("/"): m for m in tar.getmembers()}
        for path, vol in volumes.items():
            for rel, want in expected_tree(vol).items():
                m = members.get(f"{path.lstrip('/')}/{rel}")
                assert m is not None, f"{path}/{rel} not in the tar"
                type_ = "dir" if m.isdir() else "symlink" if m.issym() else "file" if m.isfile() else "other"
                check_entry(f"tar {path}/{rel}", kind(vol), want, type_=type_, mode=m.mode, mtime=m.mtime,
                            target=m.linkname or None, size=m.size)
                if want["type"] == "file":
                    assert hashlib.sha256(tar.extractfile(m).read()).hexdigest() == want["sha256"], rel


def test_a_replaced_file_is_old_in_the_full_and_new_in_the_incremental(pipeline, full, incremental, tmp_path):
    before, inc, new = full["seeded"], incremental["rp"], incremental["new"]
    wanted = [f"{path}/docs/readme.txt" for path in before]
    # The full's copy still holds every file as seeded; the incremental's the new readme.txt and all else unchanged.
    for rp, tar in ((full["rp"], "full.tar"), (inc, "incr.tar")):
        cli(pipeline, "files", rp, "get", *[f"/{d}" for d in DISKS], "--tar", str(tmp_path / tar))
    with tarfile.open(tmp_path / "full.tar") as full_tar, tarfile.open(tmp_path / "incr.tar") as inc_tar:
        for path, vol in before.items():
            for rel, want in expected_tree(vol).items():
                if want["type"] != "file":
                    continue
                name = f"{path.lstrip('/')}/{rel}"
                old = full_tar.extractfile(name).read()
                now = inc_tar.extractfile(name).read()
                assert hashlib.sha256(old).hexdigest() == want["sha256"], f"{path}/{rel}: the full changed"
                if rel == "docs/readme.txt":
                    assert now == new[path], f"{path}: the incremental does not hold the replaced file"
                    assert inc_tar.getmember(name).mtime == 1700001000 or kind(vol) == "fat", path
                else:
                    assert now == old, f"{path}/{rel} changed in the incremental"

    # diff: exactly those files changed, nothing else.
    r = pipeline.cli("files", full["rp"], "diff", inc, "/", "--content")
    assert r.returncode == 0, r.stderr
    changes = {line.split()[1] for line in r.stdout.splitlines() if line[:2] in ("+ ", "- ", "M ")}
    assert changes == set(wanted), r.stdout


def test_a_corrupt_chunk_under_a_file_names_restore_point_disk_and_offset(pipeline, full, tmp_path):
    rp, disk = full["rp"], "fs_gpt"
    path, vol = next((p, v) for p, v in full["seeded"].items() if p.startswith(f"/{disk}/") and kind(v) == "ext4")
    cli(pipeline, "files", rp, "get", f"{path}/data/blob.bin", "--output", str(tmp_path / "got"))
    content = next((tmp_path / "got").rglob("blob.bin")).read_bytes()
    raw = tmp_path / "disk.raw"
    cli(pipeline, "export", rp, "--disk", disk, "--output", str(raw))
    where = raw.read_bytes().find(content[128 << 10:(128 << 10) + 4096])  # a block inside the file
    assert where >= vol["fs_offset"], "the file's data is not on the exported disk"

    with corrupt_chunk_at(pipeline.settings, rp, disk, where) as (start, end):
        r = pipeline.cli("files", rp, "cat", f"{path}/data/blob.bin")
        assert r.returncode != 0
        assert f"restore point {rp} disk {disk} at offset" in r.stderr, r.stderr
        offset = int(r.stderr.split("at offset ")[1].split(":")[0])
        assert start <= offset < end, (offset, start, end)
        # Elsewhere the restore point still reads.
        other = next(p for p, v in full["seeded"].items() if p.startswith("/fs_mbr/") and kind(v) == "ext4")
        assert pipeline.cli("files", rp, "cat", f"{other}/etc/hostname").stdout == "fs_mbr-ext4\n"
