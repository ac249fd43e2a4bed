"""File-level restore and network access benchmark (not a test): a restore point of a 4 GiB disk holding an ext4
file system (MBR, one partition) with 10,000 small files and one 1 GiB file, against baselines in the same run.

    .venv/bin/python bench/files.py [--work DIR] [--runs N]

Prints:
  - the time to list the 10,000 files (`olvm-backup files RP find`);
  - `files get` of the 1 GiB file: time and throughput, against `olvm-backup export` of the whole disk;
  - `serve` read throughput (nbdcopy of the whole export to null:) against a plain `qemu-nbd` export of the
    exported raw image, read the same way;
  - the peak RSS of `files get` and of the export's processes.
Targets (issue 22): `get` of the big file at least half the throughput of `export`; `serve` at least half of
`qemu-nbd`'s; peak memory under 300 MiB. Each figure is the median of --runs runs, taking turns.

The disk's content is made here (mke2fs -d on a sparse file: no mounting) and uploaded into the simulator's disk
with ovirt_imageio.client.upload, as an admin would import an image; the restore point is a real full backup.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


from site_setup import (GIB, MIB, REPO, Site, each, human, peak_rss, plain_upload_into, run_measured, say,
                        settle)

from olvm_backup.config import to_environ

VM = "files1"
DISK = "files1_data"
DISK_SIZE = 4 * GIB
PART_START = MIB                      # the partition starts at 1 MiB, as every partitioning tool does
SMALL_FILES = 10_000
BIG = 1 * GIB
MEMORY_TARGET = 300 * MIB


def site_inventory() -> dict:
    return {
        "data_centers": [{"name": "Default"}],
        "clusters": [{"name": "Default", "data_center": "Default"}],
        "hosts": [{"name": "host1", "cluster": "Default"}],
        "storage_domains": [{"name": "data1", "data_center": "Default"}],
        # down: an image is uploaded into its disk before the backup
        "vms": [{"name": VM, "cluster": "Default", "memory": "1GiB", "status": "down",
                 "disks": [{"name": DISK, "size": "4GiB", "format": "cow", "interface": "virtio_scsi",
                            "storage_domain": "data1"}]}],
    }


def make_tree(root: Path) -> str:
    """10,000 small files in 100 directories and one 1 GiB file of random bytes; returns the big file's sha256."""
    rnd = random.Random(22)
    for d in range(100):
        sub = root / "many" / f"d{d:03}"
        sub.mkdir(parents=True)
        for f in range(SMALL_FILES // 100):
            (sub / f"f{f:03}.txt").write_bytes(rnd.randbytes(rnd.randint(100, 4000)))
    digest = hashlib.sha256()
    with open(root / "big.bin", "wb") as out:
        for _ in range(BIG // (8 * MIB)):
            block = os.urandom(8 * MIB)
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def make_image(tree: Path, image: Path) -> None:
    """A sparse raw disk: an MBR with one Linux partition from 1 MiB to the end, ext4 in it, seeded from `tree`."""
    with open(image, "wb") as f:
        f.truncate(DISK_SIZE)
    subprocess.run(["sfdisk", "--quiet", str(image)], input="label: dos\nstart=2048, type=83\n", text=True,
                   check=True)
    blocks = (DISK_SIZE - PART_START) // 4096
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-E", f"offset={PART_START}", "-d", str(tree),
                    str(image), str(blocks)], check=True)


def upload(site: Site, image: Path) -> None:
    """The image into the VM's disk (the VM is down)."""
    conn = site.connect()
    try:
        [disk] = conn.system_service().disks_service().list(search=f"name={DISK}")
    finally:
        conn.close()
    plain_upload_into(site, disk.id, image)


def cli_measured(site: Site, *args: str) -> tuple[float, int, str]:
    """Wall time, the command's own peak RSS and its stdout."""
    settle()
    seconds, peak, done = run_measured([sys.executable, "-m", "olvm_backup.cli.main", *args],
                                       env={**os.environ, **to_environ(site.settings)}, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"olvm-backup {' '.join(args)} failed:\n{done.stdout.decode()}\n"
                         f"{done.stderr.decode()[-3000:]}")
    return seconds, peak, done.stdout.decode()


def nbd_read(socket: Path) -> float:
    """Seconds nbdcopy takes to read the whole export on `socket` (to null:, so only the server is measured)."""
    settle()
    start = time.monotonic()
    subprocess.run(["nbdcopy", f"nbd+unix:///?socket={socket}", "null:"], check=True)
    return time.monotonic() - start


def wait_socket(path: Path, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: no socket after {timeout:.0f}s")
        time.sleep(0.1)


def descendants(pid: int) -> list[int]:
    """`pid` and every process under it (nbdkit runs in a session of its own: by parent, not by session)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += [int(c) for c in subprocess.run(["pgrep", "-P", str(p)], capture_output=True, text=True).stdout.split()]
    return found


def serve_read(site: Site, point: str, work: Path) -> tuple[float, int]:
    """`olvm-backup serve` of the disk on a unix socket, read whole with nbdcopy; returns seconds and the peak
    RSS of the export's process tree."""
    sock = work / "serve.sock"
    sock.unlink(missing_ok=True)
    env = {**os.environ, **to_environ(site.settings)}
    proc = subprocess.Popen([sys.executable, "-m", "olvm_backup.cli.main", "serve", point, "--disk", DISK,
                             "--listen", f"unix:{sock}"], env=env, cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_socket(sock, proc, "olvm-backup serve")
        seconds = nbd_read(sock)
        rss = max(peak_rss(pid) for pid in descendants(proc.pid))
        return seconds, rss
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def drop_caches() -> bool:
    """Empties the page cache (root only), so that a read of a local file comes from the disk, not from memory."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def qemu_nbd_read(image: Path, work: Path, cold: bool) -> float:
    """nbdcopy of a plain qemu-nbd export of the raw image; `cold`: its pages dropped from the cache first."""
    sock = work / "qemu-nbd.sock"
    sock.unlink(missing_ok=True)
    proc = subprocess.Popen(["qemu-nbd", "--read-only", "--persistent", "--shared=8", "-f", "raw", "-k", str(sock),
                             str(image)])
    try:
        wait_socket(sock, proc, "qemu-nbd")
        if cold and not drop_caches():
            say("cannot drop the page cache (not root): the cold qemu-nbd read is warm")
        return nbd_read(sock)
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, help="scratch directory (default: a new one under /var/tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--runs", type=int, default=3, help="measurements of each, taking turns (default 3)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="olvm-bench-files-", dir="/var/tmp"))
    try:
        say("making the guest's file system: 10,000 small files and one 1 GiB file, ext4 on MBR")
        tree = work / "tree"
        big_sha = make_tree(tree)
        image = work / "guest.raw"
        make_image(tree, image)
        shutil.rmtree(tree)
        with Site(work, site=site_inventory()) as site:
            say("uploading the image into the VM's disk, then a full backup")
            upload(site, image)
            image.unlink()
            site.cli("backup", VM, "--mode", "full", "--wait")
            _, r = site.cli("backups", VM, "--json")
            [rp] = json.loads(r.stdout)
            point, data = rp["backup_id"], rp["disks"][0]["bytes_read"]  # data: the disk's bytes that are not holes
            _, _, r = cli_measured(site, "files", point, "ls", f"/{DISK}", "--json")
            say("the disk holds: " + "; ".join(f"{v['name']} {v['note'] or ''}" for v in json.loads(r)))
            root = f"/{DISK}/p1"  # the MBR's first partition

            exported = work / "export.raw"
            lists, gets, exports, verifies, serves, colds, warms = [], [], [], [], [], [], []
            get_rss = serve_rss = export_rss = 0
            listed = got_ok = 0
            for run in range(1, args.runs + 1):
                say(f"run {run}/{args.runs}: list the 10,000 files")
                seconds, _, r = cli_measured(site, "files", point, "find", "*.txt", f"{root}/many")
                lists.append(seconds)
                listed = len(r.split())
                say(f"run {run}/{args.runs}: files get of the 1 GiB file")
                out = work / "got"
                shutil.rmtree(out, ignore_errors=True)
                seconds, rss, _ = cli_measured(site, "files", point, "get", f"{root}/big.bin", "--output", str(out))
                gets.append(seconds)
                get_rss = max(get_rss, rss)
                got = next(out.rglob("big.bin"))
                got_ok += hashlib.sha256(got.read_bytes()).hexdigest() == big_sha
                shutil.rmtree(out)
                say(f"run {run}/{args.runs}: export of the whole disk")
                exported.unlink(missing_ok=True)
                seconds, rss, _ = cli_measured(site, "export", point, "--disk", DISK, "--output", str(exported))
                exports.append(seconds)
                export_rss = max(export_rss, rss)
                say(f"run {run}/{args.runs}: verify (every chunk fetched and checked: the store's read limit)")
                verifies.append(cli_measured(site, "verify", point)[0])
                say(f"run {run}/{args.runs}: serve, read whole with nbdcopy")
                seconds, rss = serve_read(site, point, work)
                serves.append(seconds)
                serve_rss = max(serve_rss, rss)
                say(f"run {run}/{args.runs}: qemu-nbd of the exported image, read whole with nbdcopy, cold and warm")
                colds.append(qemu_nbd_read(exported, work, cold=True))
                warms.append(qemu_nbd_read(exported, work, cold=False))

        med = statistics.median
        get_s, export_s, verify_s = med(gets), med(exports), med(verifies)
        serve_s, cold_s, warm_s = med(serves), med(colds), med(warms)
        # Rates are of data bytes: holes cost neither export nor an NBD read that asks for block status.
        get_rate, export_rate, verify_rate = BIG / get_s, data / export_s, data / verify_s
        serve_rate, cold_rate, warm_rate = data / serve_s, data / cold_s, data / warm_s
        print(f"\nfile-level restore benchmark: {human(DISK_SIZE)} disk ({human(data)} of data), ext4 on MBR, "
              f"{SMALL_FILES:,} small files and one {human(BIG)} file; median of {args.runs} run(s); "
              "rates are of data bytes")
        print(f"  list the small files (files find)      {med(lists):7.1f} s                ({each(lists)}); "
              f"{listed:,} listed")
        print(f"  files get of the 1 GiB file            {get_s:7.1f} s  {human(get_rate):>10}/s  ({each(gets)})")
        print(f"  export of the whole disk               {export_s:7.1f} s  {human(export_rate):>10}/s  "
              f"({each(exports)})")
        print(f"  verify (every chunk: the store's limit){verify_s:7.1f} s  {human(verify_rate):>10}/s  "
              f"({each(verifies)})")
        print(f"  get / export {get_rate / export_rate:.2f}x (target >= 0.5x): "
              f"{'met' if get_rate >= export_rate / 2 else 'MISSED'}")
        print(f"  serve, nbdcopy of the whole disk       {serve_s:7.1f} s  {human(serve_rate):>10}/s  "
              f"({each(serves)})")
        print(f"  qemu-nbd of the raw export, cold cache {cold_s:7.1f} s  {human(cold_rate):>10}/s  ({each(colds)})")
        print(f"  qemu-nbd of the raw export, warm cache {warm_s:7.1f} s  {human(warm_rate):>10}/s  ({each(warms)})")
        print(f"  serve / qemu-nbd cold {serve_rate / cold_rate:.2f}x, warm {serve_rate / warm_rate:.2f}x "
              f"(target >= 0.5x): {'met' if serve_rate >= cold_rate / 2 else 'MISSED'} against the cold read; "
              f"serve / verify {serve_rate / verify_rate:.2f}x (what serving costs over fetching the chunks)")
        peak = max(get_rss, serve_rss)
        print(f"  peak RSS: files get {human(get_rss)}, serve {human(serve_rss)}, export {human(export_rss)} "
              f"(target < {human(MEMORY_TARGET)}: {'met' if peak < MEMORY_TARGET else 'MISSED'})")
        print(f"  the 1 GiB file got equals the guest's: {'yes' if got_ok == args.runs else 'NO'}; "
              f"all {SMALL_FILES:,} listed: {'yes' if listed == SMALL_FILES else 'NO'}")
        return 0 if got_ok == args.runs and listed == SMALL_FILES else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
