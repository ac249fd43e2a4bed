"""What a volume holds, told from its first bytes (pure): a file system dissect reads, or what cannot be read and
why (encrypted, swap, an LVM physical volume to look into, unknown)."""
from __future__ import annotations

import struct

HEAD = 128 * 1024  # enough for every signature below (btrfs's superblock is at 64 KiB)

READABLE = ("ext", "xfs", "fat", "ntfs", "btrfs")


def identify(head: bytes) -> str:
    """One of READABLE, "lvm2" (a physical volume), "luks", "swap", "empty" (all zeros) or "unknown"."""
    if head[:6] == b"LUKS\xba\xbe":
        return "luks"
    if any(head[512 * i:512 * i + 8] == b"LABELONE" and head[512 * i + 24:512 * i + 32] == b"LVM2 001"
           for i in range(4)):
        return "lvm2"
    if head[:4] == b"XFSB":
        return "xfs"
    if head[3:11] == b"NTFS    ":
        return "ntfs"
    if len(head) >= 0x10048 and head[0x10040:0x10048] == b"_BHRfS_M":
        return "btrfs"
    if len(head) >= 1082 and struct.unpack_from("<H", head, 1024 + 56)[0] == 0xEF53:
        return "ext"
    if head[510:512] == b"\x55\xaa" and (head[54:59] == b"FAT12" or head[54:59] == b"FAT16" or
                                         head[82:87] == b"FAT32" or head[54:57] == b"FAT"):
        return "fat"
    for page in (4096, 8192, 16384, 65536):
        if head[page - 10:page] in (b"SWAPSPACE2", b"SWAP-SPACE"):
            return "swap"
    if not any(head):
        return "empty"
    return "unknown"


DESCRIPTIONS = {
    "ext": "ext2/3/4", "xfs": "XFS", "fat": "FAT", "ntfs": "NTFS", "btrfs": "Btrfs",
    "luks": "encrypted (LUKS): not readable without its key", "swap": "swap", "empty": "empty (all zeros)",
    "unknown": "unknown contents", "lvm2": "LVM2 physical volume",
}
