"""Acceptance tests of the OLVM simulator, from the outside: the simulator runs as a process and the tests talk to it
only through ovirtsdk4, ovirt_imageio.client, qemu-img and the `olvm-sim` CLI (guest writes, checksums, faults)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

REPO = Path(__file__).resolve().parents[2]
INVENTORY = Path(__file__).with_name("inventory.yaml")
MIB = 1024 * 1024
START_TIMEOUT = 120


# ---------------------------------------------------------------------------------------------------------------------
# Polling
# ---------------------------------------------------------------------------------------------------------------------

def wait_for(probe, predicate=bool, timeout: float = 60, interval: float = 0.25, what: str = "condition"):
    """Call probe() until predicate(value) holds; return the value. Fails after `timeout` seconds (never loops forever).
    `probe` may raise sdk.NotFoundError: that is passed to predicate as the value None... only when asked;
    see wait_gone."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = probe()
        if predicate(last):
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
        time.sleep(interval)


def wait_gone(get, timeout: float = 60, what: str = "entity to disappear") -> None:
    """Poll get() until it raises NotFoundError (404)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            last = get()
        except sdk.NotFoundError as e:
            assert e.code == 404
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}; still there: {last!r}")
        time.sleep(0.25)


def wait_phase(get, phases, timeout: float = 60, what: str = "phase", seen: list | None = None):
    """Poll get() until .phase is one of `phases`; records every phase seen in `seen`."""
    phases = set(phases)

    def probe():
        obj = get()
        if seen is not None and (not seen or seen[-1] != obj.phase):
            seen.append(obj.phase)
        return obj

    return wait_for(probe, lambda o: o.phase in phases, timeout=timeout, what=f"{what} in {sorted(map(str, phases))}")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(4 * MIB), b""):
            h.update(block)
    return h.hexdigest()


def qemu_img(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["qemu-img", *args], capture_output=True, text=True, check=check, timeout=300)


def raw_sha256(image: Path, tmp: Path) -> str:
    """sha256 of an image's guest view (following its backing chain): qemu-img convert -O raw, then hash."""
    out = tmp / (image.name + ".raw")
    qemu_img("convert", "-O", "raw", str(image), str(out))
    try:
        return sha256_file(out)
    finally:
        out.unlink()


# ---------------------------------------------------------------------------------------------------------------------
# The simulator process
# ---------------------------------------------------------------------------------------------------------------------

def _leftovers(data: Path) -> list[str]:
    """Command lines of qemu-nbd / ovirt-imageio processes that mention the data dir."""
    found = []
    me = str(data)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if me in cmd and ("qemu-nbd" in cmd or "ovirt-imageio" in cmd or "ovirt_imageio" in cmd):
            found.append(f"{entry.name}: {cmd.strip()}")
    return found


@dataclasses.dataclass
class Sim:
    data: Path
    proc: subprocess.Popen
    log: Path
    connection: dict
    tmp_before: frozenset = frozenset()

    @property
    def tmp(self) -> Path:
        return private_tmp(self.data)

    @property
    def ca_file(self) -> str:
        return self.connection["ca_file"]

    def connect(self, **kw) -> sdk.Connection:
        c = self.connection
        return sdk.Connection(url=c["url"], username=c["username"], password=c["password"], ca_file=c["ca_file"], **kw)

    def cli(self, *args: str, timeout: float = 120) -> str:
        """Run `olvm-sim ARGS --data DIR` and return its stdout (fails the test on a non-zero exit)."""
        r = subprocess.run([sys.executable, "-m", "sim.cli", *args, "--data", str(self.data)], cwd=REPO,
                           env=_env(self.tmp), capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"olvm-sim {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}"
        return r.stdout

    def write(self, vm: str, disk: str, offset: int, length: int, seed: int | None = None) -> None:
        args = ["write", vm, disk, "--offset", str(offset), "--length", str(length)]
        if seed is not None:
            args += ["--seed", str(seed)]
        self.cli(*args)

    def checksum(self, vm: str, disk: str, snapshot: str | None = None) -> str:
        out = self.cli("checksum", vm, disk, *(["--snapshot", snapshot] if snapshot else [])).strip()
        assert len(out) == 64 and all(ch in "0123456789abcdef" for ch in out), f"not a sha256: {out!r}"
        return out

    def fault(self, kind: str, count: int = 1) -> None:
        self.cli("fault", kind, "--count", str(count))

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM, wait, then check that nothing the simulator started is left running."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                pytest.fail(f"simulator did not stop within {timeout}s of SIGTERM; log: {self.log}")
        deadline = time.monotonic() + 5
        while _leftovers(self.data) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = _leftovers(self.data)
        if left:
            for line in left:  # do not leak them into the next tests
                try:
                    os.kill(int(line.split(":")[0]), signal.SIGKILL)
                except OSError:
                    pass
        assert not left, "processes left behind after the simulator stopped:\n" + "\n".join(left)
        leaked = sorted(set(os.listdir(self.tmp)) - self.tmp_before)
        assert not leaked, f"the simulator left files in its temporary directory {self.tmp}: {leaked}"


def private_tmp(data: Path) -> Path:
    """The simulator's own TMPDIR, beside its data: what is left there is its own, not another test's or process's
    on this machine (the shared /tmp is not)."""
    return data.with_name(data.name + ".tmp")


def _env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "TMPDIR": str(tmp)}


def start_sim(data: Path, inventory: Path = INVENTORY, args: tuple[str, ...] = (),
              env: dict[str, str] | None = None) -> Sim:
    data.mkdir(parents=True, exist_ok=True)
    conn_file = data / "connection.json"
    if conn_file.exists():  # a stale one from a previous run on this dir
        conn_file.unlink()
    log = data / "sim.log"
    tmp = private_tmp(data)
    tmp.mkdir(exist_ok=True)
    tmp_before = frozenset(os.listdir(tmp))  # a restart on the same data: the earlier run's were checked by its stop
    logf = open(log, "ab")
    proc = subprocess.Popen([sys.executable, "-m", "sim.cli", "serve", "--data", str(data),
                             "--inventory", str(inventory), *args],
                            cwd=REPO, env={**_env(tmp), **(env or {})}, stdout=logf, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    logf.close()
    deadline = time.monotonic() + START_TIMEOUT
    connection = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"simulator exited with {proc.returncode} before it was ready:\n{log.read_text()[-4000:]}")
        if conn_file.exists():
            try:
                connection = json.loads(conn_file.read_text())
                break
            except ValueError:  # being written
                pass
        time.sleep(0.1)
    if connection is None:
        proc.kill()
        proc.wait(10)
        pytest.fail(f"simulator not ready after {START_TIMEOUT}s:\n{log.read_text()[-4000:]}")
    for key in ("url", "username", "password", "ca_file", "admin_url"):
        assert key in connection, f"connection.json lacks {key!r}: {connection}"
    return Sim(data, proc, log, connection, tmp_before)


def module_sim(tmp_path_factory) -> Iterator[Sim]:
    """One simulator per test module (fresh state from inventory.yaml), stopped and checked clean at the end: the body
    of a module-scoped `sim` fixture, `yield from module_sim(tmp_path_factory)`."""
    s = start_sim(tmp_path_factory.mktemp("sim"))
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Sim:
    yield from module_sim(tmp_path_factory)


@pytest.fixture(scope="module")
def connection(sim):
    conn = sim.connect()
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def vms(connection):
    return connection.system_service().vms_service()


def vm_by_name(connection, name: str) -> types.Vm:
    found = connection.system_service().vms_service().list(search=f"name={name}")
    assert len(found) == 1, f"expected one VM named {name}, got {[v.name for v in found]}"
    return found[0]


def user_snapshot(sim, vm_name: str, description: str) -> str:
    """A snapshot an administrator takes in the engine through the SDK (not ours), waited for until ok."""
    conn = sim.connect()
    try:
        svc = conn.system_service().vms_service().vm_service(vm_by_name(conn, vm_name).id).snapshots_service()
        snap = svc.add(types.Snapshot(description=description, persist_memorystate=False))
        wait_for(lambda: svc.snapshot_service(snap.id).get().snapshot_status, lambda s: s == types.SnapshotStatus.OK,
                 what=f"snapshot {description}")
        return snap.id
    finally:
        conn.close()


def engine_snapshots(sim, vm_name: str) -> dict[str, str]:
    """id -> description of the VM's snapshots on the engine, the active one left out."""
    conn = sim.connect()
    try:
        svc = conn.system_service().vms_service().vm_service(vm_by_name(conn, vm_name).id).snapshots_service()
        return {s.id: s.description for s in svc.list() if s.snapshot_type != types.SnapshotType.ACTIVE}
    finally:
        conn.close()


def vm_disks(connection, vm: types.Vm) -> dict[str, types.Disk]:
    """name -> Disk of a VM's attached disks."""
    system = connection.system_service()
    atts = system.vms_service().vm_service(vm.id).disk_attachments_service().list()
    disks = [system.disks_service().disk_service(a.disk.id).get() for a in atts]
    return {d.name: d for d in disks}


def disk_status(connection, disk_id: str):
    return connection.system_service().disks_service().disk_service(disk_id).get().status


def wait_disk_ok(connection, disk_id: str, timeout: float = 60) -> types.Disk:
    svc = connection.system_service().disks_service().disk_service(disk_id)
    return wait_for(svc.get, lambda d: d.status == types.DiskStatus.OK, timeout=timeout, what=f"disk {disk_id} ok")


def create_transfer(connection, timeout: float = 60, **kw) -> types.ImageTransfer:
    """POST an image transfer and wait until it is transferring (like the SDK examples' helper, with a deadline)."""
    kw.setdefault("format", types.DiskFormat.RAW)
    kw.setdefault("inactivity_timeout", 120)
    kw.setdefault("timeout_policy", types.ImageTransferTimeoutPolicy.CANCEL)
    transfers = connection.system_service().image_transfers_service()
    transfer = transfers.add(types.ImageTransfer(**kw))
    assert transfer.id
    svc = transfers.image_transfer_service(transfer.id)
    transfer = wait_phase(svc.get, {types.ImageTransferPhase.TRANSFERRING, types.ImageTransferPhase.FINISHED_FAILURE,
                                    types.ImageTransferPhase.PAUSED_SYSTEM, types.ImageTransferPhase.CANCELLED_SYSTEM,
                                    types.ImageTransferPhase.FINISHED_CLEANUP},
                          timeout=timeout, what=f"transfer {transfer.id}")
    return transfer


def finalize_transfer(connection, transfer: types.ImageTransfer, timeout: float = 60) -> types.ImageTransfer:
    svc = connection.system_service().image_transfers_service().image_transfer_service(transfer.id)
    svc.finalize()
    t = wait_phase(svc.get, {types.ImageTransferPhase.FINISHED_SUCCESS, types.ImageTransferPhase.FINISHED_FAILURE},
                   timeout=timeout, what=f"transfer {transfer.id} finished")
    assert t.phase == types.ImageTransferPhase.FINISHED_SUCCESS, f"transfer {t.id} ended in {t.phase}"
    return t
