"""What a volume holds, told from its first bytes (access/probe.py), and how logical volumes are named: pure."""
from __future__ import annotations

import struct

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
