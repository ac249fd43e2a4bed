"""`olvm-backup files` as an operator runs it, in process, against moto: restore points made straight from disk
images (tests/restore_points.py) of a known tree: an MBR disk with ext4, swap and LUKS partitions, and a GPT disk
with a FAT EFI partition. What ls, find, cat, get (directory and tar) and diff give equals the tree (content,
modes, owners, mtimes, symlinks); errors say what is wrong; a corrupt pack byte under a file names the restore point,
the disk and the offset."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tarfile
import uuid
from pathlib import Path

import pytest

from olvm_backup.cli.main import main
from olvm_backup.config import S3Settings, Settings, to_environ
from olvm_backup.secret import Secret
from tests.cli_env import olvm_environ
from tests.disk_images import LUKS_HEADER, MIB, SWAP_PAGE, WHEN, described, ext4, fat, partitioned, source_tree
from tests.restore_points import corrupt_chunk_at, make_restore_point

pytestmark = pytest.mark.processes  # mke2fs, sfdisk, mtools make the images
EFI_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"


@dataclasses.dataclass
class Repo:
    settings: Settings
    tree: Path       # the source tree rp1 holds
    tree2: Path      # rp2's: rp1's with changes
    sys_image: Path


def _disks(base: Path, tree: Path, tag: str) -> dict[str, Path]:
    e = ext4(tree, base / f"{tag}.ext4")
    f = fat(tree, base / f"{tag}.fat")
    return {
        "sys": partitioned(base / f"{tag}-sys.img", 40 * MIB, "dos",
                           [(18, e, "83", ""), (2, SWAP_PAGE, "82", ""), (2, LUKS_HEADER, "83", "")]),
        "efi": partitioned(base / f"{tag}-efi.img", 20 * MIB, "gpt", [(17, f, EFI_TYPE, "EFI System")]),
    }


@pytest.fixture(scope="module")
def repo(tmp_path_factory, moto_endpoint) -> Repo:
    base = tmp_path_factory.mktemp("files")
    settings = Settings(data_dir=base, s3=S3Settings(endpoint_url=moto_endpoint, bucket=f"b-{uuid.uuid4().hex[:12]}",
                                                      access_key=Secret("testing"), secret_key=Secret("testing")))
    tree = source_tree(base / "tree")
    tree2 = base / "tree2"
    shutil.copytree(tree, tree2, symlinks=True)
    for p in [tree2 / "home/alice", *(tree2 / "home/alice").rglob("*")] if os.geteuid() == 0 else []:
        os.lchown(p, 1000, 1000)  # copytree keeps modes and times, not owners
    (tree2 / "etc/hosts").write_bytes(b"127.0.0.1 localhost\n10.0.0.6 db\n")          # same size, new content
    os.utime(tree2 / "etc/hosts", (WHEN + 2, WHEN + 2))                                 # ...and the same mtime
    (tree2 / "home/alice/notes.txt").write_bytes(b"remember the milk and eggs\n")       # bigger
    os.utime(tree2 / "home/alice/notes.txt", (WHEN + 500, WHEN + 500))
    (tree2 / "var/log/empty.log").unlink()                                              # removed
    (tree2 / "srv/empty/new.txt").write_bytes(b"new\n")                                 # added
    disks = _disks(base, tree, "rp1")
    make_restore_point(settings, disks, backup_id="rp1", completed_at=1.0)
    make_restore_point(settings, _disks(base, tree2, "rp2"), backup_id="rp2", completed_at=2.0)
    make_restore_point(settings, disks, backup_id="rp-bad", vm_id="vm2", completed_at=3.0)  # packs of its own
    return Repo(settings, tree, tree2, disks["sys"])


@pytest.fixture
def env(repo, monkeypatch) -> Repo:
    olvm_environ(monkeypatch, to_environ(repo.settings))
    return repo


def files(*args: str) -> int:
    return main(["files", *args])


def test_ls_lists_disks_volumes_with_what_they_hold_and_files_with_their_metadata(env, capsys):
    assert files("rp1", "ls", "/") == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["sys", "efi"]
    assert files("rp1", "ls", "/sys") == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "ext2/3/4" in lines["p1"] and "18.0 MiB" in lines["p1"]
    assert "swap" in lines["p2"] and "encrypted (LUKS)" in lines["p3"]
    assert files("rp1", "ls", "--json", "/sys/p1/home/alice") == 0
    listed = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    want = described(env.tree)
    assert set(listed) == {"data", "notes.txt"}
    kind, mode, uid, gid, mtime, _ = want["home/alice/notes.txt"]
    assert (listed["notes.txt"]["mode"], listed["notes.txt"]["uid"], listed["notes.txt"]["gid"],
            listed["notes.txt"]["mtime"], listed["notes.txt"]["size"]) == (f"{mode:04o}", uid, gid, mtime, 18)
    assert files("rp1", "ls", "--long", "/sys/p1/home") == 0
    out = capsys.readouterr().out
    assert "lrwxrwxrwx" in out and "hosts-link -> ../etc/hosts" in out and "drwxr-xr-x   1000:1000" in out


def test_get_to_a_directory_equals_the_source_tree_on_ext4_and_fat(env, tmp_path, capsys):
    assert files("rp1", "get", "/sys/p1", "/efi/p1/home", "--output", str(tmp_path / "out")) == 0
    got = described(tmp_path / "out/p1")
    assert got.pop("lost+found")[0] == "dir"  # mke2fs's own
    want = described(env.tree)
    assert got == want  # content, modes, owners, file and symlink mtimes, symlink targets
    fat_got = {rel: (kind, mtime, digest) for rel, (kind, _, _, _, mtime, digest) in
               described(tmp_path / "out/home").items()}
    fat_want = {rel[len("home/"):]: (kind, mtime, digest) for rel, (kind, _, _, _, mtime, digest) in want.items()
                if rel.startswith("home/") and kind != "symlink"}  # FAT keeps no symlinks
    for rel, (kind, mtime, digest) in fat_want.items():
        got_kind, got_mtime, got_digest = fat_got.pop(rel)
        assert (got_kind, got_digest) == (kind, digest), rel
        assert kind == "dir" or abs(got_mtime - mtime) <= 2, rel  # FAT keeps mtimes to 2 seconds
    assert fat_got == {}


def test_get_to_a_tar_keeps_modes_owners_mtimes_and_symlinks(env, tmp_path, capsys):
    out = tmp_path / "rp1.tar"
    assert files("rp1", "get", "/sys/p1/home", "/sys/p1/etc", "--tar", str(out)) == 0
    want = {rel: v for rel, v in described(env.tree, dir_mtimes=False).items() if rel.split("/")[0] in ("home", "etc")}
    got = {}
    with tarfile.open(out) as tar:
        for m in tar.getmembers():
            if m.issym():
                got[m.name] = ("symlink", None, m.uid, m.gid, int(m.mtime), m.linkname)
            elif m.isdir():
                got[m.name] = ("dir", m.mode, m.uid, m.gid, None, None)
            else:
                got[m.name] = ("file", m.mode, m.uid, m.gid, int(m.mtime),
                               hashlib.sha256(tar.extractfile(m).read()).hexdigest())
    assert got == want


def test_cat_and_find(env, capsysbinary):
    assert files("rp1", "cat", "/sys/p1/home/alice/data/blob.bin") == 0
    assert capsysbinary.readouterr().out == (env.tree / "home/alice/data/blob.bin").read_bytes()
    assert files("rp1", "cat", "/sys/p1/home/hosts-link") == 0  # through the symlink
    assert capsysbinary.readouterr().out == (env.tree / "etc/hosts").read_bytes()
    assert files("rp1", "cat", "/sys/p1/home/app-link/app.conf") == 0  # a symlinked directory on the way
    assert capsysbinary.readouterr().out == (env.tree / "etc/app/app.conf").read_bytes()
    assert files("rp1", "cat", "/sys/p1/etc/app.conf") == 0  # an absolute target: from the volume's root
    assert capsysbinary.readouterr().out == (env.tree / "etc/app/app.conf").read_bytes()
    assert files("rp1", "cat", "/efi/p1/ETC/APP/App.Conf") == 0  # FAT names match whatever their case
    assert capsysbinary.readouterr().out == (env.tree / "etc/app/app.conf").read_bytes()
    assert files("rp1", "find", "*.conf") == 0
    found = capsysbinary.readouterr()
    assert found.out.decode().split() == ["/sys/p1/etc/app/app.conf", "/sys/p1/etc/app.conf",
                                          "/efi/p1/etc/app/app.conf"]
    assert b"skipped /sys/p3: encrypted (LUKS)" in found.err
    assert files("rp1", "find", "/sys/*/home/*/*.txt", "/sys") == 0
    assert capsysbinary.readouterr().out.decode().split() == ["/sys/p1/home/alice/notes.txt"]


def test_diff_says_what_was_added_removed_and_changed(env, capsys):
    assert files("rp1", "diff", "rp2", "/sys/p1") == 0
    assert capsys.readouterr().out.splitlines() == [
        "M /sys/p1/home/alice/notes.txt  (size 18 -> 27, mtime)", "+ /sys/p1/srv/empty/new.txt",
        "- /sys/p1/var/log/empty.log"]  # not etc/hosts: same size and mtime, content not compared unless asked
    assert files("rp1", "diff", "rp2", "/sys/p1/etc", "--content") == 0
    assert capsys.readouterr().out.splitlines() == ["M /sys/p1/etc/hosts  (content)"]


def test_errors_say_what_is_wrong(env, capsys, monkeypatch):
    cases = [
        (["ls", "/data"], "no disk 'data' in restore point rp1 (disks: sys, efi)"),
        (["ls", "/sys/p9"], "no volume 'p9' on disk sys (volumes: p1, p2, p3)"),
        (["ls", "/sys/p1/etc/nothing"], "/sys/p1/etc/nothing: no such file or directory"),
        (["ls", "/sys/p1/etc/hosts/x"], "/sys/p1/etc/hosts/x: not a directory: /sys/p1/etc/hosts"),
        (["ls", "/sys/p3"], "/sys/p3: the volume cannot be read: encrypted (LUKS)"),
        (["cat", "/sys/p1/etc"], "/sys/p1/etc: is a directory"),
    ]
    for args, message in cases:
        assert files("rp1", *args) == 1, args
        assert message in capsys.readouterr().err, args
    assert files("nope", "ls", "/") == 1
    assert "nope" in capsys.readouterr().err

    import importlib

    from olvm_backup.access import extra

    real = importlib.import_module

    def no_dissect(name, *a, **kw):
        if name.startswith("dissect"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *a, **kw)

    monkeypatch.setattr(extra.importlib, "import_module", no_dissect)
    assert files("rp1", "ls", "/") == 1
    assert "file-level restore needs the optional AGPL extra: pip install 'olvm-backup[files]'" in \
        capsys.readouterr().err


def test_a_corrupt_pack_byte_under_a_file_names_restore_point_disk_and_offset(env, capsys, tmp_path):
    blob = (env.tree / "home/alice/data/blob.bin").read_bytes()
    where = env.sys_image.read_bytes().find(blob[MIB:MIB + 4096])  # a block in the middle of the file
    assert where > 0
    with corrupt_chunk_at(env.settings, "rp-bad", "sys", where) as (start, end):
        assert files("rp-bad", "cat", "/sys/p1/home/alice/data/blob.bin") == 1
        err = capsys.readouterr().err
        assert "restore point rp-bad disk sys at offset" in err and "corrupt chunk" in err, err
        offset = int(err.split("at offset ")[1].split(":")[0])
        assert start <= offset < end
        assert files("rp-bad", "cat", "/sys/p1/etc/hosts") == 0  # the rest of the restore point still reads
        assert capsys.readouterr().out.encode() == (env.tree / "etc/hosts").read_bytes()
        # get stops at it too, and leaves no file cut short that would look restored: neither the file nor a tar
        out, tar = tmp_path / "got", tmp_path / "got.tar"
        assert files("rp-bad", "get", "/sys/p1/etc/hosts", "/sys/p1/home/alice/data/blob.bin", "--output",
                     str(out)) == 1
        assert "restore point rp-bad disk sys at offset" in capsys.readouterr().err
        assert (out / "hosts").read_bytes() == (env.tree / "etc/hosts").read_bytes()
        assert not (out / "blob.bin").exists()
        assert files("rp-bad", "get", "/sys/p1/home/alice/data", "--tar", str(tar)) == 1
        assert "restore point rp-bad disk sys at offset" in capsys.readouterr().err
        assert not tar.exists()
