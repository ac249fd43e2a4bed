"""Restore benchmark (not a test): restoring the 4 GiB disk (2 GiB of mixed data) from a restore point, against a
plain ovirt_imageio.client.upload of the same image into a new disk, measured in the same run.

    .venv/bin/python bench/restore.py [--work DIR] [--runs N]

Target (issue 5): the restore takes at most 1.5x the plain upload. Both end with a disk equal to the source
(checked by checksum, not timed). Each is measured --runs times, taking turns; the ratio is of the medians
(a single run of either varies by about 5% on a small machine).
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

import ovirtsdk4.types as types

from site_setup import DISK, DISK_SIZE, VM, Site, _wait, each, human, plain_download, plain_upload_into, say

TARGET = 1.5


def plain_upload(site: Site, image: Path, name: str = "bench1_upload") -> tuple[float, str]:
    """Create a 4 GiB qcow2 disk and upload the raw image into it with ovirt_imageio.client.upload; returns the
    upload's seconds (disk creation and transfer setup not counted) and the new disk's name."""
    conn = site.connect()
    try:
        system = conn.system_service()
        [sd] = system.storage_domains_service().list(search="name=data1")
        disks = system.disks_service()
        disk = disks.add(types.Disk(name=name, provisioned_size=DISK_SIZE, format=types.DiskFormat.COW,
                                    sparse=True, storage_domains=[types.StorageDomain(id=sd.id)]))
        _wait(disks.disk_service(disk.id).get, lambda d: d.status == types.DiskStatus.OK, "new disk ok")
    finally:
        conn.close()
    return plain_upload_into(site, disk.id, image), name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, help="scratch directory (default: a new one under /var/tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--runs", type=int, default=3, help="measurements of each, taking turns (default 3)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="olvm-bench-", dir="/var/tmp"))
    try:
        with Site(work) as site:
            say("olvm-backup: full backup (the restore point to restore)")
            site.cli("backup", VM, "--mode", "full", "--wait")
            [point] = [p for p in site.restore_points() if p["mode"] == "full"]
            source = site.checksum(VM, DISK)

            say("baseline: download the disk as a raw image (once)")
            image = work / "image.raw"
            plain_download(site, image)
            uploads, restores, restored_ok = [], [], True
            for run in range(1, args.runs + 1):
                say(f"run {run}/{args.runs}: plain ovirt_imageio.client.upload of the image into a new disk")
                uploads.append(plain_upload(site, image, f"bench{run}_upload")[0])
                say(f"run {run}/{args.runs}: olvm-backup restore of the disk as a new VM")
                cpu_before = site.service_cpu()
                restore_s, _ = site.cli("restore", point["backup_id"], "--name", f"bench{run}-restored", "--disk",
                                        DISK, "--wait")
                restores.append(restore_s)
                cpu = {name: used - cpu_before.get(name, 0.0) for name, used in site.service_cpu().items()}
                restored_ok = restored_ok and site.checksum(f"bench{run}-restored", DISK) == source
            image.unlink()
            rss = site.service_rss()
        restore_s, upload_s = statistics.median(restores), statistics.median(uploads)
        ratio = restore_s / upload_s
        print(f"\nrestore benchmark: {human(DISK_SIZE)} disk {DISK}, 2 GiB written (random, text, zeros); "
              f"median of {args.runs} run(s)")
        print(f"  olvm-backup restore (whole job: VM, disk, upload, attach) {restore_s:8.1f} s   ({each(restores)})")
        print(f"  plain ovirt_imageio.client.upload (upload only)            {upload_s:8.1f} s   ({each(uploads)})")
        print(f"  ratio {ratio:.2f}x (target <= {TARGET}x): {'met' if ratio <= TARGET else 'MISSED'}")
        print(f"  every restored disk equals the source: {'yes' if restored_ok else 'NO'}")
        print(f"  restorer peak RSS {human(rss.get('restorer-1', 0))}")
        print("  CPU seconds used during the last restore: " + ", ".join(
            f"{name} {used:.1f}" for name, used in sorted(cpu.items(), key=lambda kv: -kv[1]) if used >= 0.05))
        return 0 if restored_ok else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
