"""Where an inventory disk's volumes go: partition table (mbr, gpt or none), partition numbers and byte ranges, and the
sfdisk script that writes the table. Pure logic.

MBR with more than four volumes: three primaries, the fourth entry an extended partition over the rest of the disk,
every later volume a logical partition (5, 6...) with its EBR in the MiB before it, as fdisk lays them out.
"""
from __future__ import annotations

import uuid as uuidlib

from . import fstree
from .mkfs import FILESYSTEMS, MIN_SIZE

ALIGN = 1 << 20
SECTOR = 512
TABLES = ("mbr", "gpt", "none")
MBR_TYPE = {"ext4": "83", "xfs": "83", "fat": "c", "ntfs": "7", "lvm": "8e"}
GPT_TYPE = {"ext4": "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "xfs": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
            "fat": "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", "ntfs": "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",
            "lvm": "E6D6D379-F507-44C2-A23C-238F2A3DF928"}
VOLUME_KEYS = {"name", "fs", "size", "lvm", "files", "label"}


class LayoutError(ValueError):
    pass


def _size(value) -> int:
    from ..inventory import size
    return size(value)


def plan(spec: dict, disk_size: int, disk_id: str, where: str = "filesystems") -> dict:
    """The disk's layout from the inventory's `filesystems:` mapping, checked."""
    if not isinstance(spec, dict):
        raise LayoutError(f"{where}: expected a mapping with table and volumes")
    table = spec.get("table", "gpt")
    if table not in TABLES:
        raise LayoutError(f"{where}: table {table!r} is not one of {', '.join(TABLES)}")
    items = spec.get("volumes") or []
    if not items:
        raise LayoutError(f"{where}: no volumes")
    if table == "none" and len(items) != 1:
        raise LayoutError(f"{where}: a disk without a partition table holds exactly one volume")
    if table == "gpt" and len(items) > 128:
        raise LayoutError(f"{where}: GPT holds at most 128 partitions")
    volumes, names = [], set()
    pos, end = (0, disk_size) if table == "none" else (ALIGN, disk_size - (ALIGN if table == "gpt" else 0))
    extended = None
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not item.get("name"):
            raise LayoutError(f"{where}: volume {i + 1} needs a name")
        name = str(item["name"])
        at = f"{where}: volume {name}"
        if set(item) - VOLUME_KEYS:
            raise LayoutError(f"{at}: unknown keys {sorted(set(item) - VOLUME_KEYS)}")
        if name in names:
            raise LayoutError(f"{at}: the name is used twice")
        names.add(name)
        fs = item.get("fs")
        if fs not in FILESYSTEMS:
            raise LayoutError(f"{at}: fs {fs!r} is not one of {', '.join(FILESYSTEMS)}")
        lvm = item.get("lvm")
        if lvm is not None and not (isinstance(lvm, dict) and lvm.get("vg") and lvm.get("lv")):
            raise LayoutError(f"{at}: lvm needs vg and lv names")
        number = None
        if table == "mbr":
            if len(items) > 4 and i == 3:
                extended = {"start": pos, "size": end - pos}
            if extended is not None:
                pos += ALIGN  # the logical partition's EBR
            number = i + 1 if extended is None else i + 2
        elif table == "gpt":
            number = i + 1
        size = end - pos if table == "none" and "size" not in item else _size(item.get("size", 0))
        if size <= 0 or size % ALIGN:
            raise LayoutError(f"{at}: size must be a positive number of MiB")
        if pos + size > end:
            raise LayoutError(f"{at}: {size >> 20} MiB at {pos >> 20} MiB does not fit the {disk_size >> 20} MiB disk")
        if size < MIN_SIZE[fs] + (2 * ALIGN if lvm else 0):
            raise LayoutError(f"{at}: {fs} needs at least {MIN_SIZE[fs] >> 20} MiB (and 2 MiB more for LVM)")
        try:
            files = fstree.parse(item.get("files") or [], at)
        except fstree.TreeError as e:
            raise LayoutError(str(e)) from None
        volumes.append({"name": name, "label": str(item.get("label", name)), "fs": fs, "partition": number,
                        "start": pos, "size": size, "lvm": dict(lvm) if lvm else None,
                        "uuid": str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"olvm-sim:{disk_id}:{name}")),
                        "part_uuid": str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"olvm-sim:{disk_id}:{name}:part")),
                        "files": files})
        pos += size
    return {"table": table, "disk_size": disk_size, "extended": extended,
            "id": str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"olvm-sim:{disk_id}")), "volumes": volumes}


def sfdisk_script(layout: dict) -> str:
    """The input `sfdisk` takes to write the layout's partition table (none for table: none)."""
    table = layout["table"]
    if table == "none":
        return ""
    label_id = layout["id"] if table == "gpt" else "0x" + layout["id"].replace("-", "")[:8]
    lines = [f"label: {'dos' if table == 'mbr' else 'gpt'}", f"label-id: {label_id}", "unit: sectors",
             f"sector-size: {SECTOR}", ""]
    for vol in layout["volumes"]:
        if layout["extended"] and vol["partition"] == 5:
            ext = layout["extended"]
            lines.append(f"start={ext['start'] // SECTOR}, size={ext['size'] // SECTOR}, type=5")
        kind = "lvm" if vol["lvm"] else vol["fs"]
        line = f"start={vol['start'] // SECTOR}, size={vol['size'] // SECTOR}"
        if table == "mbr":
            line += f", type={MBR_TYPE[kind]}"
        else:
            line += f", type={GPT_TYPE[kind]}, uuid={vol['part_uuid']}, name=\"{vol['name']}\""
        lines.append(line)
    return "\n".join(lines) + "\n"
