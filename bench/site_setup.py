"""What both benchmarks stand on: the simulator with one big VM, the embedded stack (Tansu, rclone's S3, services)
on free ports in a scratch directory, timed CLI jobs, plain-imageio baselines through the SDK, and per-process peak RSS.

The baselines use only ovirtsdk4 and ovirt_imageio.client, as an admin's script would.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from olvm_backup.config import (EngineSettings, KafkaSettings, RepositorySettings, S3Settings, Settings,  # noqa: E402
                                to_environ)
from olvm_backup.secret import Secret  # noqa: E402
from olvm_backup.stack.embedded import EmbeddedStack  # noqa: E402
from olvm_backup.stack.processes import ManagedProcess, free_port  # noqa: E402

MIB = 1 << 20
GIB = 1 << 30
VM = "bench1"
DISK = "bench1_os"
SMALL = "bench1_small"
DISK_SIZE = 4 * GIB
# 2 GiB written: random (incompressible), text (compressible), explicit zeros, spread over the 4 GiB disk.
CONTENT = [
    {"offset": 0, "length": 768 * MIB, "pattern": "random", "seed": 1},
    {"offset": 1 * GIB, "length": 768 * MIB, "pattern": "text", "text": "olvm-backup bench: compressible row\n"},
    {"offset": 2 * GIB, "length": 256 * MIB, "pattern": "text", "text": "\0"},  # zeros the guest wrote as data
    {"offset": 3 * GIB, "length": 256 * MIB, "pattern": "random", "seed": 2},
]


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def each(seconds: list[float]) -> str:
    """Every run's seconds, as the benchmarks print them beside a median."""
    return ", ".join(f"{s:.1f}" for s in seconds)


def say(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def settle() -> None:
    """Called before every timed step: the page cache's dirty data (a downloaded image, a restic repository, packs)
    is written back first, so that no step pays for the writeback of the one before it."""
    os.sync()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss(pid: int, field: str = "VmHWM") -> int:
    """VmHWM (peak) or VmRSS (now) of a live process, in bytes (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_measured(argv: list[str], **kw) -> tuple[float, int, subprocess.CompletedProcess]:
    """Run a command; return its wall time, its own peak RSS and the completed process. The peak is the command's
    VmHWM read while it runs: a child's rusage (wait4, RUSAGE_CHILDREN) carries the parent's RSS at the fork over
    the exec, so it would count this script's memory too."""
    start = time.monotonic()
    with tempfile.TemporaryFile() as out_file, tempfile.TemporaryFile() as err_file:
        proc = subprocess.Popen(argv, stdout=out_file, stderr=err_file, **kw)
        rss = 0
        while proc.poll() is None:
            rss = max(rss, peak_rss(proc.pid))
            time.sleep(0.05)
        elapsed = time.monotonic() - start
        out_file.seek(0)
        err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    return elapsed, rss, subprocess.CompletedProcess(argv, proc.returncode, out, err)


def inventory() -> dict:
    return {
        "data_centers": [{"name": "Default"}],
        "clusters": [{"name": "Default", "data_center": "Default"}],
        "hosts": [{"name": "host1", "cluster": "Default"}],
        "storage_domains": [{"name": "data1", "data_center": "Default"}],
        "vms": [{"name": VM, "cluster": "Default", "memory": "2GiB", "status": "up", "guest_agent": True,
                 "nics": [{"name": "nic1", "interface": "virtio", "network": "ovirtmgmt"}],
                 "disks": [
                     {"name": DISK, "size": "4GiB", "format": "cow", "interface": "virtio_scsi", "bootable": True,
                      "storage_domain": "data1",
                      "content": CONTENT},
                     {"name": SMALL, "size": "64MiB", "format": "cow", "interface": "virtio",
                      "storage_domain": "data1",
                      "content": [{"offset": 0, "length": 8 * MIB, "pattern": "random", "seed": 3}]}]}],
    }


@dataclasses.dataclass
class Site:
    work: Path
    readers: int = 2
    writers: int = 1
    sim: ManagedProcess | None = None
    connection: dict | None = None
    stack: EmbeddedStack | None = None
    settings: Settings | None = None
    site: dict | None = None  # the simulator's inventory; inventory() when None

    def start(self) -> "Site":
        self.work.mkdir(parents=True, exist_ok=True)
        inv = self.work / "inventory.yaml"
        inv.write_text(yaml.safe_dump(self.site or inventory()))
        sim_dir = self.work / "sim"
        conn_file = sim_dir / "connection.json"
        say("starting the simulator" + ("" if self.site else " and seeding a 4 GiB disk with 2 GiB of data"))
        t = time.monotonic()
        self.sim = ManagedProcess("olvm-sim", [sys.executable, "-m", "sim.cli", "serve", "--data", str(sim_dir),
                                               "--inventory", str(inv)], cwd=REPO,
                                  log_file=self.work / "sim.log", ready=conn_file.exists, ready_timeout=1800)
        self.sim.start()
        say(f"simulator ready in {time.monotonic() - t:.0f}s")
        self.connection = c = json.loads(conn_file.read_text())
        self.settings = Settings(
            data_dir=self.work / "data", log_level="INFO",
            kafka=KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}"),
            s3=S3Settings(endpoint_url=f"http://127.0.0.1:{free_port()}"),
            engine=EngineSettings(url=c["url"], username=c["username"], password=Secret(c["password"]),
                                  ca_file=c["ca_file"]))
        self.stack = EmbeddedStack(self.settings, readers=self.readers, writers=self.writers)
        self.stack.start()
        return self

    def stop(self) -> None:
        if self.stack is not None:
            self.stack.stop()
        if self.sim is not None:
            self.sim.stop(timeout=60)

    def __enter__(self) -> "Site":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- the product ----------------------------------------------------------------------------------------
    def cli(self, *args: str) -> tuple[float, subprocess.CompletedProcess]:
        env = {**os.environ, **to_environ(self.settings)}
        settle()
        start = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "olvm_backup.cli.main", *args], env=env, cwd=REPO,
                           capture_output=True, text=True, timeout=7200)
        elapsed = time.monotonic() - start
        if r.returncode != 0:
            raise SystemExit(f"olvm-backup {' '.join(args)} failed:\n{r.stdout}\n{r.stderr[-3000:]}")
        return elapsed, r

    def restore_points(self) -> list[dict]:
        _, r = self.cli("backups", VM, "--json")
        return json.loads(r.stdout)

    def bucket_bytes(self) -> int:
        import boto3
        s3 = self.settings.s3
        client = boto3.client("s3", endpoint_url=s3.endpoint_url, aws_access_key_id=s3.access_key.reveal(),
                              aws_secret_access_key=s3.secret_key.reveal(), region_name=s3.region)
        total = 0
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket):
            total += sum(o["Size"] for o in page.get("Contents", []))
        return total

    def service_rss(self) -> dict[str, int]:
        """Peak RSS so far of every process the stack runs, and of the simulator."""
        out = {p.name: peak_rss(p.pid) for p in self.stack.infra}
        out |= {s.name: peak_rss(s.process.pid) for s in self.stack.services}
        return out

    def service_cpu(self) -> dict[str, float]:
        """CPU seconds (user + system) used so far by every process the stack runs."""
        out = {p.name: cpu_seconds(p.pid) for p in self.stack.infra}
        out |= {s.name: cpu_seconds(s.process.pid) for s in self.stack.services}
        return out

    def fresh_repository(self, encrypted: bool, bucket: str, passphrase_file: Path, pause: float = 5.0) -> None:
        """The whole stack stopped, then started again (a new broker, so no consumer group carries over) on a new
        bucket that `up` initialises encrypted with the passphrase in `passphrase_file`, or as
        `init --no-encryption` (OLVM_REPOSITORY_ENCRYPT=false), the previous bucket's objects removed;
        then waited on until idle (under 20 % of a core for 2 s) and `pause` seconds more: what every full backup
        of the encryption comparison starts from, so each is a first full into an empty repository with a freshly
        started stack, whichever its mode. (Restarting only the services left the readers' group unassigned.)
        """
        self.stack.stop()
        shutil.rmtree(self.settings.data_dir / "objects" / self.settings.s3.bucket, ignore_errors=True)
        # the passphrase `up` generated for its first bucket: the CLI would adopt it for a plain repository too
        (self.settings.data_dir / "repository.password").unlink(missing_ok=True)
        repo = (RepositorySettings(password_file=str(passphrase_file)) if encrypted
                else RepositorySettings(encrypt=False))  # `up` initialises the new bucket so
        self.settings = dataclasses.replace(self.settings, s3=dataclasses.replace(self.settings.s3, bucket=bucket),
                                            repository=repo)
        self.stack = EmbeddedStack(self.settings, readers=self.readers, writers=self.writers)
        self.stack.start()
        deadline = time.monotonic() + 60
        used, quiet = sum(self.service_cpu().values()), 0
        while time.monotonic() < deadline and quiet < 4:  # idle: under 20 % of a core, all processes, for 2 s
            time.sleep(0.5)
            if not all(svc.process.running() for svc in self.stack.services):
                bad = next(svc for svc in self.stack.services if not svc.process.running())
                raise SystemExit(f"{bad.name} exited after a restart; log: {bad.process.tail()}")
            before, used = used, sum(self.service_cpu().values())
            quiet = quiet + 1 if used - before < 0.1 else 0
        time.sleep(pause)

    def broker_rss_now(self) -> int:
        return next(peak_rss(p.pid, "VmRSS") for p in self.stack.infra if p.name == "broker")

    # -- the engine, as a plain script would use it ------------------------------------------------------
    def connect(self) -> sdk.Connection:
        c = self.connection
        return sdk.Connection(url=c["url"], username=c["username"], password=c["password"], ca_file=c["ca_file"])

    def guest_write(self, offset: int, length: int, seed: int) -> None:
        from sim.client import SimAdmin  # acting as the guest: the simulator's back door
        SimAdmin(self.work / "sim").write(VM, DISK, offset, length, seed)

    def checksum(self, vm: str, disk: str) -> str:
        from sim.client import SimAdmin
        return SimAdmin(self.work / "sim").checksum(vm, disk)


def _wait(probe, done, what: str, timeout: float = 600):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.25)


def plain_upload_into(site: Site, disk_id: str, image: Path) -> float:
    """The raw `image` into disk `disk_id` with an upload transfer and ovirt_imageio.client.upload, as an admin
    imports an image; returns the seconds the upload itself took (the engine calls around it are not counted)."""
    from ovirt_imageio import client
    conn = site.connect()
    try:
        transfers = conn.system_service().image_transfers_service()
        transfer = transfers.add(types.ImageTransfer(disk=types.Disk(id=disk_id),
                                                     direction=types.ImageTransferDirection.UPLOAD,
                                                     format=types.DiskFormat.RAW, inactivity_timeout=300))
        ts = transfers.image_transfer_service(transfer.id)
        transfer = _wait(ts.get, lambda t: t.phase == types.ImageTransferPhase.TRANSFERRING, "upload transfer")
        settle()
        start = time.monotonic()
        client.upload(str(image), transfer.transfer_url, site.connection["ca_file"])
        elapsed = time.monotonic() - start
        ts.finalize()
        _wait(ts.get, lambda t: t.phase in (types.ImageTransferPhase.FINISHED_SUCCESS,
                                            types.ImageTransferPhase.FINISHED_FAILURE), "upload end")
        return elapsed
    finally:
        conn.close()


def plain_download(site: Site, dest: Path) -> float:
    """A full backup of the big disk through the backup API, downloaded as raw with ovirt_imageio.client.download;
    returns the seconds the download itself took (the engine calls around it are not counted)."""
    from ovirt_imageio import client
    conn = site.connect()
    try:
        system = conn.system_service()
        [vm] = system.vms_service().list(search=f"name={VM}")
        vs = system.vms_service().vm_service(vm.id)
        disk = next(system.disks_service().disk_service(a.disk.id).get()
                    for a in vs.disk_attachments_service().list()
                    if system.disks_service().disk_service(a.disk.id).get().name == DISK)
        backups = vs.backups_service()
        backup = backups.add(types.Backup(disks=[types.Disk(id=disk.id)]))
        bs = backups.backup_service(backup.id)
        _wait(bs.get, lambda b: b.phase == types.BackupPhase.READY, "baseline backup ready")
        transfers = system.image_transfers_service()
        transfer = transfers.add(types.ImageTransfer(disk=types.Disk(id=disk.id), backup=types.Backup(id=backup.id),
                                                     direction=types.ImageTransferDirection.DOWNLOAD,
                                                     format=types.DiskFormat.RAW, inactivity_timeout=300))
        ts = transfers.image_transfer_service(transfer.id)
        transfer = _wait(ts.get, lambda t: t.phase == types.ImageTransferPhase.TRANSFERRING, "transfer")
        dest.unlink(missing_ok=True)
        settle()
        start = time.monotonic()
        client.download(transfer.transfer_url, str(dest), site.connection["ca_file"], fmt="raw")
        elapsed = time.monotonic() - start
        ts.finalize()
        _wait(ts.get, lambda t: t.phase in (types.ImageTransferPhase.FINISHED_SUCCESS,
                                            types.ImageTransferPhase.FINISHED_FAILURE), "transfer end")
        bs.finalize()
        _wait(bs.get, lambda b: b.phase in (types.BackupPhase.SUCCEEDED, types.BackupPhase.FAILED), "backup end")
        return elapsed
    finally:
        conn.close()


class Restic:
    """restic (Debian package) with a local repository: the baseline for time and bytes stored."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.env = {**os.environ, "RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": str(repo),
                    "RESTIC_CACHE_DIR": str(repo.parent / "restic-cache")}
        r = subprocess.run(["restic", "init"], env=self.env, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"restic init failed: {r.stderr}")

    def backup(self, path: Path) -> tuple[float, int]:
        settle()
        elapsed, rss, r = run_measured(["restic", "backup", "--quiet", str(path)], env=self.env)
        if r.returncode != 0:
            raise SystemExit(f"restic backup failed: {r.stderr.decode()}")
        return elapsed, rss

    def size(self) -> int:
        return sum(f.stat().st_size for f in self.repo.rglob("*") if f.is_file())

    @staticmethod
    def version() -> str:
        return subprocess.run(["restic", "version"], capture_output=True, text=True).stdout.strip()
