"""The volumes on the disks of a restore point: partitions (MBR, GPT), LVM2 logical volumes, or a file system on
the whole disk; each with what it holds (probe.py) or why it cannot be read.

Volume names, as paths use them (`/<disk>/<volume>/...`):
- `p1`, `p2`...: partition N of the disk's table, numbered as Linux numbers it (sda1, nvme0n1p1; an MBR's logical
  partitions from 5); a GPT partition's name is shown beside it, not used: names repeat ("Linux filesystem");
- `fs`: a disk with no partition table and a file system (or LUKS, swap...) on the whole disk;
- `<vg>-<lv>`: logical volume `lv` of volume group `vg`, as /dev/mapper names it (a '-' inside either name is
  doubled: vg `my-vg`, lv `root` is `my--vg-root`); listed on the disk that holds the group's first physical
  volume (a group may span disks), the physical volumes themselves listed as `lvm2` volumes naming their group.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Mapping

from .extra import dissect
from .image import RestorePointImage
from .probe import DESCRIPTIONS, HEAD, READABLE, identify

log = logging.getLogger(__name__)

CONTAINERS = {0x05, 0x0F, 0x85}  # MBR extended partitions: their logical partitions are listed instead


@dataclass
class Volume:
    disk: str
    name: str
    kind: str                           # probe.identify's: "ext", "xfs"... "lvm2", "luks", "swap", "unknown"
    size: int
    opener: Callable[[], BinaryIO] = field(repr=False)
    offset: int | None = None           # on its disk (a logical volume has none)
    label: str = ""                     # partition type and GPT name, volume group
    problem: str = ""                   # why it cannot be read, when it cannot

    @property
    def readable(self) -> bool:
        return self.kind in READABLE and not self.problem

    def open(self) -> BinaryIO:
        return self.opener()

    def describe(self) -> str:
        what = self.problem or DESCRIPTIONS.get(self.kind, self.kind)
        return f"{what} ({self.label})" if self.label else what


def dm_name(vg: str, lv: str) -> str:
    return f"{vg.replace('-', '--')}-{lv.replace('-', '--')}"


def _window(image: RestorePointImage, offset: int, size: int) -> Callable[[], BinaryIO]:
    """A fresh stream (its own position) over [offset, offset+size) of the image for each open."""
    def opener() -> BinaryIO:
        stream = image.stream()
        return dissect("util.stream").RangeStream(stream, offset, size) if offset or size != image.size else stream
    return opener


def _head(opener: Callable[[], BinaryIO]) -> str:
    fh = opener()
    fh.seek(0)
    return identify(fh.read(HEAD))


def _partitions(image: RestorePointImage) -> list[tuple[int, Any]] | None:
    """(number, partition) of the disk's table, or None when it has none dissect knows."""
    disk_mod = dissect("volume.disk")
    try:
        disk = disk_mod.Disk(image.stream())
    except Exception as e:  # DiskError, or a parser tripping over a table it half knows
        log.debug("disk %s: no partition table: %s", image.name, e)
        return None
    return _linux_numbers(disk)


def _linux_numbers(disk: Any) -> list[tuple[int, Any]]:
    """Partitions numbered as Linux numbers them: an MBR's primary ones by their slot (1-4), its logical ones (inside
    an extended partition) 5, 6... in chain order; dissect counts the logical ones on from the extended's slot."""
    if not isinstance(disk.scheme, dissect("volume.disk.schemes").MBR):  # GPT keeps a protective MBR: not this one
        return [(p.number, p) for p in disk.partitions]
    table = disk.scheme.mbr
    sector = disk.sector_size
    extended = [(e.sector_ofs * sector, (e.sector_ofs + e.sector_size) * sector)
                for e in table.part if e.type in CONTAINERS]
    out, logical = [], 5
    for p in disk.partitions:
        if any(start <= p.offset < end for start, end in extended):
            out.append((logical, p))
            logical += 1
        else:
            out.append((p.number, p))
    return out


def _size(part: Any) -> int:
    """A partition's size; a GPT entry's last LBA is inclusive (dissect counts it out: one sector short)."""
    raw = part.raw
    if raw is not None and hasattr(raw, "last_lba") and hasattr(raw, "first_lba"):
        return (raw.last_lba - raw.first_lba + 1) * part.disk.sector_size
    return part.size


def discover(images: Mapping[str, RestorePointImage]) -> dict[str, list[Volume]]:
    """Every disk's volumes, in disk order then table order. A disk or volume that cannot be read is listed with
    its problem rather than failing the rest."""
    found: dict[str, list[Volume]] = {}
    pvs: list[Volume] = []
    for name, image in images.items():
        volumes: list[Volume] = []
        whole = _window(image, 0, image.size)
        try:
            kind = _head(whole)
            table = None if kind not in ("unknown", "empty") else _partitions(image)
        except Exception as e:  # a chunk that cannot be read, a table dissect chokes on: said, not fatal
            found[name] = [Volume(name, "fs", "unknown", image.size, whole, 0, problem=f"unreadable: {e}")]
            continue
        if table is None:
            volumes.append(Volume(name, "fs", kind, image.size, whole, 0))
        for number, part in table or ():
            if part.type in CONTAINERS or not part.size:
                continue
            size = _size(part)
            opener = _window(image, part.offset, size)
            label = part.type_str + (f", {part.name!r}" if part.name else "")
            try:
                kind, problem = _head(opener), ""
            except Exception as e:
                kind, problem = "unknown", f"unreadable: {e}"
            volumes.append(Volume(name, f"p{number}", kind, size, opener, part.offset, label, problem))
        pvs += [v for v in volumes if v.kind == "lvm2" and not v.problem]
        found[name] = volumes
    for disk, lvs in _logical_volumes(pvs):
        found[disk].extend(lvs)
    return found


def _logical_volumes(pvs: list[Volume]) -> list[tuple[str, list[Volume]]]:
    """The logical volumes of the volume groups whose physical volumes are `pvs`, each group's under the disk of
    its first physical volume found."""
    if not pvs:
        return []
    lvm = dissect("volume.lvm")
    groups: dict[str, list[tuple[Volume, Any]]] = {}
    for pv in pvs:
        try:
            device = lvm.physical.LVM2Device(pv.open())
            vg_name, vg = next((k, v) for k, v in device.metadata.items() if isinstance(v, dict))
        except Exception as e:
            pv.problem = f"LVM2 metadata unreadable: {e}"
            continue
        pv.label = f"volume group {vg_name}"
        groups.setdefault(vg["id"], []).append((pv, device))
    out = []
    for members in groups.values():
        first = members[0][0]
        try:
            group = lvm.LVM2([device for _, device in members]).volume_group
        except Exception as e:
            for pv, _ in members:
                pv.problem = f"volume group unreadable: {e}"
            continue
        missing = [p.id for p in group.pv if p._dev is None]
        lvs = []
        for lv in group.lv:
            if not lv.is_visible:
                continue  # thin pools' and mirrors' internal volumes
            extent = group.extent_size * 512
            size = sum(s.extent_count for s in lv.segments) * extent
            volume = Volume(first.disk, dm_name(group.name, lv.name), "unknown", size, lv.open, None,
                            f"LVM2 {group.name}/{lv.name}")
            if missing:
                volume.problem = (f"volume group {group.name} has physical volume(s) {', '.join(missing)} on no "
                                  "disk of this restore point")
            else:
                try:
                    volume.kind = _head(volume.opener)
                except Exception as e:
                    volume.problem = f"unreadable: {e}"
            lvs.append(volume)
        out.append((first.disk, lvs))
    return out
