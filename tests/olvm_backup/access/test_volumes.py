"""What a volume holds, told from its first bytes (access/probe.py), and how logical volumes are named: pure."""
from __future__ import annotations

import struct

import pytest

from olvm_backup.access.probe import identify
from olvm_backup.access.volumes import dm_name


def at(offset: int, data: bytes, size: int = 128 * 1024) -> bytes:
    buf = bytearray(size)
    buf[offset:offset + len(data)] = data
    return bytes(buf)


def test_identify_tells_file_systems_and_what_cannot_be_read():
    ext = at(1024 + 56, struct.pack("<H", 0xEF53))
    fat = bytearray(at(82, b"FAT32   "))
    fat[510:512] = b"\x55\xaa"
    lvm = at(512, b"LABELONE" + bytes(16) + b"LVM2 001")
    assert [identify(h) for h in (
        ext, at(0, b"XFSB"), at(3, b"NTFS    "), at(0x10040, b"_BHRfS_M"), bytes(fat), lvm, at(0, b"LUKS\xba\xbe"),
        at(4096 - 10, b"SWAPSPACE2"), bytes(4096), at(100, b"something"),
    )] == ["ext", "xfs", "ntfs", "btrfs", "fat", "lvm2", "luks", "swap", "empty", "unknown"]
    assert identify(at(0, b"LUKS\xba\xbe") + b"") == "luks"
    assert identify(lvm[:4096]) == "lvm2"  # a short head (a tiny volume) still tells


def test_logical_volumes_are_named_as_device_mapper_names_them():
    assert dm_name("vg0", "root") == "vg0-root"
    assert dm_name("my-vg", "data-1") == "my--vg-data--1"


@pytest.mark.processes  # sfdisk
def test_partitions_are_numbered_as_linux_numbers_them(tmp_path):
    """An MBR's logical partitions (in an extended one) are p5, p6... as sda5; a GPT's by their entry."""
    import asyncio
    import subprocess

    from olvm_backup.access.image import RestorePointImage
    from olvm_backup.access.volumes import discover
    from olvm_backup.crypto.sealing import PLAIN
    from olvm_backup.objectstore.memory import MemoryStore
    from tests.restore_points import store_restore_point

    tables = {
        "mbr": "label: dos\nstart=2048, size=2048, type=83\nstart=6144, size=8192, type=5\n"
               "start=8192, size=2048, type=82\nstart=12288, size=2048, type=83\n",
        "gpt": "label: gpt\nstart=2048, size=2048, name=boot\nstart=6144, size=2048, name=root\n",
    }
    disks = {}
    for name, table in tables.items():
        disks[name] = tmp_path / f"{name}.img"
        with open(disks[name], "wb") as f:
            f.truncate(8 << 20)
        subprocess.run(["sfdisk", "-q", str(disks[name])], input=table.encode(), check=True, capture_output=True)
    store = MemoryStore()
    manifest = asyncio.run(store_restore_point(store, disks))
    images = {d.name: RestorePointImage(store, PLAIN, manifest, d) for d in manifest.disks}
    try:
        found = discover(images)
    finally:
        for image in images.values():
            image.close()
    assert [(v.name, v.offset, v.size) for v in found["mbr"]] == [
        ("p1", 1 << 20, 1 << 20), ("p5", 4 << 20, 1 << 20), ("p6", 6 << 20, 1 << 20)]
    assert [(v.name, v.offset, v.size, v.label.split(", ")[-1]) for v in found["gpt"]] == [
        ("p1", 1 << 20, 1 << 20, "'boot'"), ("p2", 3 << 20, 1 << 20, "'root'")]
