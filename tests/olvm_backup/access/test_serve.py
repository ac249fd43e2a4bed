"""`olvm-backup serve` and `mount` against a restore point in moto, read by real user-space clients: nbdcopy and
nbdinfo over NBD, qemu-img over iSCSI (libiscsi), qemu-io writing, the kernel through FUSE. Each export is stopped
the way an admin stops it (--stop, SIGTERM) and must leave no process, mount, port or state behind."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from olvm_backup.access.image import open_image
from olvm_backup.access.mounts import is_mounted
from olvm_backup.config import S3Settings, Settings, to_environ
from olvm_backup.objectstore import open_store
from olvm_backup.repository import keyring
from olvm_backup.secret import Secret
from olvm_backup.stack.processes import free_port, pid_alive, port_open
from tests.restore_points import make_restore_point

MIB = 1 << 20
DISK_SIZE = 12 * MIB
ALLOWED = "iqn.2026-01.test:allowed"


def raw_image() -> bytes:
    """12 MiB: random and text MiBs with all-zero MiBs (holes in the map) between, a short last MiB."""
    rnd = random.Random(22)
    parts = []
    for i in range(12):
        if i in (2, 3, 7, 10):
            parts.append(bytes(MIB))
        elif i % 2:
            parts.append((f"block {i} " * MIB)[:MIB].encode())
        else:
            parts.append(rnd.randbytes(MIB))
    return b"".join(parts)[:DISK_SIZE - 4096]


def holes_of(raw: bytes) -> list[tuple[int, int]]:
    """The all-zero MiBs (the test helper cuts 1 MiB chunks), merged: what the export must report as holes."""
    out: list[tuple[int, int]] = []
    for start in range(0, len(raw), MIB):
        if not any(raw[start:start + MIB]):
            end = min(len(raw), start + MIB)
            if out and out[-1][1] == start:
                out[-1] = (out[-1][0], end)
            else:
                out.append((start, end))
    return out


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def point(moto_endpoint, tmp_path_factory):
    """(settings, backup id, raw bytes): a restore point of one disk, `root`, in its own bucket."""
    # moto takes any keys: distinctive ones, that a test can look for where they must never be
    s3 = S3Settings(endpoint_url=moto_endpoint, bucket=f"b-{uuid.uuid4().hex[:12]}",
                    access_key=Secret(f"key-{uuid.uuid4().hex}"), secret_key=Secret(f"secret-{uuid.uuid4().hex}"))
    settings = dataclasses.replace(Settings(), data_dir=tmp_path_factory.mktemp("serve") / "data", s3=s3)
    raw = raw_image()
    make_restore_point(settings, {"root": raw}, backup_id="rp-serve")
    return settings, "rp-serve", raw


def cli(settings: Settings, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """olvm-backup as an admin runs it: its own process, the settings in its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLVM_")} | to_environ(settings)
    return subprocess.run([sys.executable, "-m", "olvm_backup.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def start_foreground(settings: Settings, *args: str, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLVM_")} | to_environ(settings)
    return subprocess.Popen([sys.executable, "-m", "olvm_backup.cli.main", *args], env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def export_state(settings: Settings, export_id: str) -> dict:
    return json.loads((settings.data_dir / "exports" / export_id / "state.json").read_text())


def run(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=60, **kwargs)


def nbd_bytes(uri: str, tmp_path: Path) -> bytes:
    out = tmp_path / f"copy-{uuid.uuid4().hex[:6]}.raw"
    done = run("nbdcopy", uri, str(out))
    assert done.returncode == 0, done.stderr
    return out.read_bytes()


def assert_nothing_left(settings: Settings, state: dict, ports: list[int]) -> None:
    for child in state["children"]:
        assert not pid_alive(child["pid"]), f"{child['name']} still runs"
    assert not pid_alive(state["pid"]), "the supervisor still runs"
    for mount in state["mounts"]:
        assert not is_mounted(Path(mount)), f"{mount} still mounted"
    for port in ports:
        assert not port_open("127.0.0.1", port), f"port {port} still listens"
    assert not (settings.data_dir / "exports" / state["id"]).exists()
    if state["listen"].startswith("unix:"):
        assert not Path(state["listen"][5:]).exists(), "the export's socket is left"
    assert not Path(state["run_dir"]).exists()
    if state.get("tgtd_control_port"):
        assert not list(Path("/var/run/tgtd").glob(f"socket.{state['tgtd_control_port']}*")), "tgtd's files are left"


def test_read_only_export_over_nbd_and_iscsi(point, tmp_path):
    settings, backup_id, raw = point
    nbd_port, iscsi_port = free_port(), free_port()
    started = cli(settings, "serve", backup_id, "--disk", "root", "--listen", f"tcp:127.0.0.1:{nbd_port}",
                  "--iscsi", f"tcp:127.0.0.1:{iscsi_port}", "--allow", ALLOWED, "--detach")
    assert started.returncode == 0, started.stderr + started.stdout
    export_id = started.stdout.split()[1].rstrip(":")
    state = export_state(settings, export_id)
    try:
        uri = f"nbd://127.0.0.1:{nbd_port}"
        assert sha(nbd_bytes(uri, tmp_path)) == sha(raw)

        mapped = json.loads(run("nbdinfo", "--map", "--json", uri).stdout)
        assert [(e["offset"], e["offset"] + e["length"]) for e in mapped if e["type"] & 1] == holes_of(raw)

        refused = run("qemu-io", "-f", "raw", "-c", "write -P 0xaa 0 4096", uri)
        assert refused.returncode != 0 and "wrote" not in refused.stdout
        assert sha(nbd_bytes(uri, tmp_path)) == sha(raw)

        listed = cli(settings, "serve", "--list")
        row = next(line for line in listed.stdout.splitlines() if line.startswith(export_id))
        assert backup_id in row and "root" in row and str(nbd_port) in row and state["iscsi_target"] in row

        def iscsi(initiator: str, out: Path) -> subprocess.CompletedProcess:
            spec = {"driver": "iscsi", "transport": "tcp", "portal": f"127.0.0.1:{iscsi_port}",
                    "target": state["iscsi_target"], "lun": 1, "initiator-name": initiator}
            return run("qemu-img", "convert", "-O", "raw", "json:" + json.dumps(spec), str(out))

        allowed = iscsi(ALLOWED, tmp_path / "iscsi.raw")
        assert allowed.returncode == 0, allowed.stderr
        assert sha((tmp_path / "iscsi.raw").read_bytes()) == sha(raw)
        stranger = iscsi("iqn.2026-01.test:stranger", tmp_path / "stranger.raw")
        assert stranger.returncode != 0 and "log in" in stranger.stderr
    finally:
        stopped = cli(settings, "serve", "--stop", export_id)
    assert stopped.returncode == 0, stopped.stderr
    assert_nothing_left(settings, state, [nbd_port, iscsi_port])
    assert "no exports" in cli(settings, "serve", "--list").stdout


def test_overlay_writes_survive_a_restart_and_the_restore_point_does_not_change(point, tmp_path):
    settings, backup_id, raw = point
    overlay = tmp_path / "root-overlay.qcow2"
    sock = tmp_path / "rw.sock"
    uri = f"nbd+unix:///?socket={sock}"
    args = ("serve", backup_id, "--disk", "root", "--writable", "--overlay", str(overlay), "--listen", f"unix:{sock}")
    pattern = ("write -P 0xab 5M 64k", "write -P 0xcd 2M 4k")  # into data, then into a hole

    for round_ in (1, 2):
        log = tmp_path / f"serve-{round_}.log"
        serving = start_foreground(settings, *args, log=log)
        try:
            wait_for(lambda log=log: "serving until Ctrl-C" in log.read_text(), "the export")
            if round_ == 1:
                for command in pattern:
                    wrote = run("qemu-io", "-f", "raw", "-c", command, uri)
                    assert wrote.returncode == 0 and "wrote" in wrote.stdout, wrote.stderr
            copy = nbd_bytes(uri, tmp_path)
            state = next(s for s in map(json.loads, [p.read_text() for p in
                                                     (settings.data_dir / "exports").glob("*/state.json")]))
        finally:
            serving.send_signal(signal.SIGTERM)
            assert serving.wait(60) == 0, log.read_text()
        expected = bytearray(raw)
        expected[5 * MIB:5 * MIB + 65536] = b"\xab" * 65536
        expected[2 * MIB:2 * MIB + 4096] = b"\xcd" * 4096
        assert sha(copy) == sha(bytes(expected)), f"round {round_}"
        assert_nothing_left(settings, state, [])

    with open_image(settings, backup_id, "root") as image:  # the restore point itself: unchanged
        assert sha(image.pread(image.size, 0)) == sha(raw)

    make_restore_point(settings, {"root": raw[:MIB]}, backup_id="rp-other", vm_id="vm2")
    other = cli(settings, "serve", "rp-other", "--disk", "root", "--writable", "--overlay", str(overlay))
    assert other.returncode == 1 and f"was made over {backup_id}/" in other.stderr, other.stderr


def test_an_encrypted_restore_point_is_served_its_passphrase_never_in_arguments(point, tmp_path):
    """The repository's passphrase reaches nbdkit by environment: the export reads the sealed chunks, and no
    process of the export carries the passphrase (or the S3 keys) in its arguments."""
    plain, _, raw = point
    passphrase = f"pass-{uuid.uuid4().hex}"
    settings = dataclasses.replace(
        plain, s3=dataclasses.replace(plain.s3, bucket=f"b-{uuid.uuid4().hex[:12]}"),
        repository=dataclasses.replace(plain.repository, password=Secret(passphrase)))

    async def init() -> None:
        async with open_store(settings.s3) as store:
            await keyring.init_repository(store, settings.repository, n=2 ** 12)
    asyncio.run(init())
    make_restore_point(settings, {"root": raw}, backup_id="rp-sealed")
    sock = tmp_path / "sealed.sock"
    started = cli(settings, "serve", "rp-sealed", "--disk", "root", "--listen", f"unix:{sock}", "--detach")
    assert started.returncode == 0, started.stderr + started.stdout
    export_id = started.stdout.split()[1].rstrip(":")
    state = export_state(settings, export_id)
    try:
        assert sha(nbd_bytes(f"nbd+unix:///?socket={sock}", tmp_path)) == sha(raw)
        for pid in [state["pid"], *(child["pid"] for child in state["children"])]:
            argv = Path(f"/proc/{pid}/cmdline").read_text()
            for secret in (passphrase, settings.s3.secret_key.reveal(), settings.s3.access_key.reveal()):
                assert secret not in argv, "a secret in process arguments"
    finally:
        stopped = cli(settings, "serve", "--stop", export_id)
    assert stopped.returncode == 0, stopped.stderr
    assert_nothing_left(settings, state, [])


def test_stop_cleans_up_after_a_killed_export(point, tmp_path):
    """The supervisor SIGKILLed: it stopped nothing. --stop kills what it left (qemu-nbd, nbdfuse, tgtd) and
    unmounts the FUSE file view."""
    settings, backup_id, _ = point
    nbd_port, iscsi_port = free_port(), free_port()
    started = cli(settings, "serve", backup_id, "--disk", "root", "--listen", f"tcp:127.0.0.1:{nbd_port}",
                  "--writable", "--overlay", str(tmp_path / "o.qcow2"), "--iscsi", f"tcp:127.0.0.1:{iscsi_port}",
                  "--allow", "127.0.0.1", "--detach")
    assert started.returncode == 0, started.stderr + started.stdout
    export_id = started.stdout.split()[1].rstrip(":")
    state = export_state(settings, export_id)
    assert {c["name"] for c in state["children"]} == {"nbdkit", "qemu-nbd", "nbdfuse", "tgtd"}
    os.kill(state["pid"], signal.SIGKILL)
    wait_for(lambda: not pid_alive(state["pid"]), "the supervisor to die")
    assert "DEAD" in cli(settings, "serve", "--list").stdout
    stopped = cli(settings, "serve", "--stop", export_id)
    assert stopped.returncode == 0, stopped.stderr
    assert_nothing_left(settings, state, [nbd_port, iscsi_port])


@contextlib.contextmanager
def mounted(settings: Settings, backup_id: str, where: Path, *args: str, make: bool = True):
    """`olvm-backup mount` in its own process until the block ends, then SIGTERM: it must unmount and exit 0.
    `make`: the directory is made first."""
    if make:
        where.mkdir()
    log = where.with_suffix(".log")
    mounting = start_foreground(settings, "mount", backup_id, str(where), *args, log=log)
    try:
        wait_for(lambda: "mounted read-only" in log.read_text(), f"the mount ({log})")
        yield where
    finally:
        mounting.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            mounting.wait(30)
        if is_mounted(where):
            subprocess.run(["fusermount3", "-u", "-z", str(where)])
    assert mounting.returncode == 0, log.read_text()
    assert not is_mounted(where)


def test_mount_shows_each_disk_as_a_raw_file(point, tmp_path):
    """Detached, then unmounted the way the README says: fusermount3 -u; the background process ends with it."""
    settings, backup_id, raw = point
    where = tmp_path / "mnt"
    where.mkdir()
    started = cli(settings, "mount", backup_id, str(where), "--detach")
    assert started.returncode == 0, started.stderr
    pid = int(started.stdout.split("(pid ")[1].split(",")[0])
    try:
        assert os.listdir(where) == ["root.raw"]
        assert (where / "root.raw").stat().st_size == len(raw)
        assert sha((where / "root.raw").read_bytes()) == sha(raw)
        with pytest.raises(OSError):
            open(where / "root.raw", "r+b")
    finally:
        subprocess.run(["fusermount3", "-u", str(where)], check=True)
    wait_for(lambda: not pid_alive(pid), "the mount's process to end")
    assert not is_mounted(where)


def test_a_killed_mount_is_taken_down_by_the_next(point, tmp_path):
    """A mount SIGKILLed leaves a dead FUSE mount (every access fails with ENOTCONN); the next mount on the same
    directory takes it down and mounts."""
    settings, backup_id, raw = point
    where = tmp_path / "mnt"
    where.mkdir()
    log = tmp_path / "killed.log"
    killed = start_foreground(settings, "mount", backup_id, str(where), log=log)
    try:
        wait_for(lambda: "mounted read-only" in log.read_text(), f"the mount ({log})")
    finally:
        killed.kill()
        killed.wait(10)
    assert is_mounted(where)
    with pytest.raises(OSError):
        os.listdir(where)
    with mounted(settings, backup_id, where, make=False) as mnt:
        assert sha((mnt / "root.raw").read_bytes()) == sha(raw)


def test_mount_with_files_shows_the_file_systems_files(point, tmp_path):
    """An MBR disk with an ext4 partition: its files under files/<disk>/p1/, with their content, modes, owners,
    mtimes and symlinks as the source tree has them."""
    from tests.disk_images import described, ext4, partitioned, source_tree

    settings, _, _ = point
    tree = source_tree(tmp_path / "tree")
    image = partitioned(tmp_path / "sys.img", 24 * MIB, "dos", [(20, ext4(tree, tmp_path / "fs.ext4"), "83", "")])
    make_restore_point(settings, {"sys": image}, backup_id="rp-files")
    with mounted(settings, "rp-files", tmp_path / "mnt", "--files") as where:
        assert sorted(os.listdir(where)) == ["files", "sys.raw"]
        assert os.listdir(where / "files" / "sys") == ["p1"]
        root = where / "files" / "sys" / "p1"
        seen = {path: what for path, what in described(root).items() if not path.startswith("lost+found")}
        assert seen == described(tree)
        assert (root / "home/hosts-link").read_bytes() == (tree / "etc/hosts").read_bytes()
        with pytest.raises(OSError):
            (root / "etc/hosts").write_bytes(b"changed")


def test_a_child_still_starting_is_recorded_for_stop(point, tmp_path):
    """The supervisor killed while a child starts up (nbdkit opening the repository, tgtd coming up) stopped
    nothing: the state already names the child, so --stop ends it. Here the supervisor is this process (its state
    as start() begins it), the child a `sleep` that never gets ready."""
    import threading

    from olvm_backup.access import exports
    from olvm_backup.stack.processes import ProcessStartError

    settings, backup_id, _ = point
    export = exports.Export(settings, exports.ExportSpec(backup_id, "root"))
    export.dir.mkdir(parents=True)
    export.state = {"id": export.export_id, "pid": os.getpid(), "listen": f"unix:{export.run_dir / 'nbd.sock'}"}

    def start() -> None:
        with contextlib.suppress(ProcessStartError):  # not ready in time, or killed by --stop
            export._start("sleep", ["sleep", "120"], lambda: False)

    starting = threading.Thread(target=start, daemon=True)
    starting.start()
    try:
        wait_for(lambda: export.processes and export.processes[0].pid, "the child to start")
        wait_for(lambda: (export.dir / "state.json").exists(), "the state to name it", timeout=5)
        child = export_state(settings, export.export_id)["children"]
        assert [c["name"] for c in child] == ["sleep"] and pid_alive(child[0]["pid"])
        exports.stop(settings, export.export_id)
        starting.join(10)
        assert not pid_alive(child[0]["pid"]) and not export.dir.exists()
    finally:
        for process in export.processes:
            process.stop(timeout=1)
