"""An LVM2 physical volume made in an image file, with one volume group holding one linear logical volume.

The LVM tools want a block device: the image goes on a loop device for the time the tools run and is detached
afterwards. No device-mapper here, so nothing is activated (--driverloaded n): the LV's data area is found from its
extents and the PV's first extent, and the caller writes the file system there.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from ..procs import SimProcessError

EXTENT = 1 << 20  # small extents: a test PV of a few MiB loses little to rounding


class LvmError(SimProcessError):
    pass


def _config(device: str) -> str:
    # Only this loop device is looked at (another test's volume groups on other loop devices stay invisible, and two of
    # the same name never meet); no udev, no device file, no archives of our metadata in /etc/lvm.
    accept = f'[ "a|^{device}$|", "r|.*|" ]'
    return (f"devices {{ filter={accept} global_filter={accept} obtain_device_list_from_udev=0 use_devicesfile=0 }} "
            "activation { udev_sync=0 udev_rules=0 } backup { backup=0 archive=0 }")


def _run(*argv: str) -> str:
    r = subprocess.run(argv, capture_output=True, timeout=120,
                       env={**os.environ, "LVM_SUPPRESS_FD_WARNINGS": "1"})
    if r.returncode != 0:
        raise LvmError(f"{' '.join(argv[:2])}… failed: {r.stderr.decode(errors='replace').strip()}")
    return r.stdout.decode(errors="replace")


def make_pv(image: Path, vg: str, lv: str) -> tuple[int, int]:
    """Make image a PV of a new VG `vg` with LV `lv` over all its free space; return the LV's (offset, size) in it."""
    device = _run("losetup", "--find", "--show", str(image)).strip()
    try:
        lvm = ["--config", _config(device), "--driverloaded", "n"]
        _run("pvcreate", *lvm, "-q", "-y", device)
        _run("vgcreate", *lvm, "-q", "-s", f"{EXTENT >> 20}m", vg, device)
        _run("lvcreate", *lvm, "-q", "-an", "--zero", "n", "-l", "100%FREE", "-n", lv, vg)
        pvs = json.loads(_run("pvs", *lvm, "--reportformat", "json", "--units", "b", "--nosuffix",
                              "-o", "pe_start,vg_extent_size", device))["report"][0]["pv"][0]
        segs = json.loads(_run("lvs", *lvm, "--reportformat", "json", "--units", "b", "--nosuffix",
                               "-o", "lv_name,seg_pe_ranges,seg_size", f"{vg}/{lv}"))["report"][0]["lv"]
    finally:
        subprocess.run(["losetup", "--detach", device], capture_output=True, timeout=60)
    if len(segs) != 1:
        raise LvmError(f"LV {vg}/{lv} came out in {len(segs)} segments, not one")
    first_pe = int(segs[0]["seg_pe_ranges"].rsplit(":", 1)[1].split("-")[0])
    return int(pvs["pe_start"]) + first_pe * int(pvs["vg_extent_size"]), int(segs[0]["seg_size"])
