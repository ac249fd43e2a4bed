"""A VM from an OVA's descriptor: the standard DMTF OVF (VMware, VirtualBox, oVirt's own export to OVA), read as the
engine's OvfOvaReader does, into the same shape as `ovf.read` gives for the engine's own OVF.

What the engine takes: VirtualSystem@ovf:id (the VM id when it is a UUID), its Name (else that id), the OS from
OperatingSystemSection@ovirt:id (oVirt's OS id) or else the CIM OS id in @ovf:id mapped to the closest oVirt OS,
CPU (ResourceType 3) and memory (4) items, NICs (10), and each DiskSection/Disk: @ovf:diskId is the disk id and
@ovf:fileRef names the References/File holding its image; disk items (17) point at a disk by
HostResource `ovf:/disk/<diskId>`.
"""
from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET

from .ovf import OvfError

# oVirt's OS ids (osinfo) for the names the simulator uses.
OVIRT_OS = {0: "other", 1: "windows_xp", 3: "windows_2003", 4: "windows_2008", 5: "other_linux", 7: "rhel_5",
            8: "rhel_4", 9: "rhel_3", 10: "windows_2003x64", 11: "windows_7", 12: "windows_7x64", 13: "rhel_5x64",
            14: "rhel_4x64", 15: "rhel_3x64", 16: "windows_2008x64", 17: "windows_2008R2x64", 18: "rhel_6",
            19: "rhel_6x64", 20: "windows_8", 21: "windows_8x64", 23: "windows_2012x64", 24: "rhel_7x64",
            25: "windows_2012R2x64", 26: "windows_10", 27: "windows_10x64", 29: "windows_2016x64", 30: "rhel_8x64",
            31: "windows_2019x64", 33: "other_linux_kernel_4", 34: "rhel_9x64", 35: "rhcos_x64", 1500: "freebsd",
            1501: "freebsdx64"}
# The engine's map from CIM OS ids (OvfOvaReader.mapOsId) to oVirt OS ids.
CIM_OS = {**{k: 1 for k in (67, 71, 72)}, 69: 3, 70: 10, 76: 4, 77: 16, 103: 17, 105: 11, 114: 20, 115: 21,
          113: 23, 116: 25, 120: 26, 121: 27, 117: 29, 122: 31, 125: 35, 42: 1500, 78: 1501,
          **{k: 5 for k in (36, 79, 80, 82, 83, 84, 85, 89, 90, 91, 92, 93, 94, 95, 96, 97, 98, 99, 100, 101, 106,
                            107, 108, 109)}}
NIC_TYPES = ("e1000", "e1000e", "pci_passthrough", "rtl8139", "rtl8139_virtio", "spapr_vlan", "virtio")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _attrs(el: ET.Element) -> dict[str, str]:
    """Attributes by local name (ovf:diskId, ovirt:id, vmw:osType... whatever their namespace URI)."""
    out: dict[str, str] = {}
    for k, v in el.attrib.items():
        name = _local(k)
        ns = k[1:].split("}", 1)[0] if k.startswith("{") else ""
        if "ovirt" in ns:
            name = "ovirt:" + name
        out.setdefault(name, v)
    return out


def _child(el: ET.Element, name: str) -> ET.Element | None:
    return next((c for c in el if _local(c.tag) == name), None)


def _find(el: ET.Element, name: str) -> ET.Element | None:
    return next((c for c in el.iter() if _local(c.tag) == name), None)


def units(text: str | None) -> int:
    """A DMTF programmatic unit ("byte * 2^20", "byte * 1024", "MegaBytes", "GB"...) as a multiplier of bytes."""
    if not text:
        return 1
    text = text.strip()
    named = {"byte": 1, "bytes": 1, "kilobytes": 1 << 10, "kb": 1 << 10, "megabytes": 1 << 20, "mb": 1 << 20,
             "gigabytes": 1 << 30, "gb": 1 << 30, "terabytes": 1 << 40, "tb": 1 << 40}
    if text.lower() in named:
        return named[text.lower()]
    parts = [p.strip() for p in text.split("*")]
    if parts[0] != "byte":
        raise OvfError(f"unsupported allocation unit {text!r}: the base unit must be bytes")
    factor = 1
    for p in parts[1:]:
        m = re.fullmatch(r"(\d+)(?:\^(\d+))?", p)
        if not m:
            raise OvfError(f"unsupported allocation unit {text!r}")
        factor *= int(m.group(1)) ** int(m.group(2) or 1)
    return factor


def _uuid(text: str | None) -> str | None:
    try:
        return str(uuid.UUID(text or ""))
    except ValueError:
        return None


def read(text: str) -> dict:
    try:
        root = ET.fromstring(text.strip())
    except ET.ParseError as e:
        raise OvfError(f"the OVA configuration is not XML: {e}") from None
    if _local(root.tag) != "Envelope":
        raise OvfError("the OVA configuration has no Envelope")
    system = _find(root, "VirtualSystem")
    if system is None:
        raise OvfError("the OVA configuration has no VirtualSystem")
    system_id = _attrs(system).get("id", "")
    name_el = _child(system, "Name")
    out: dict = {"name": (name_el.text or "").strip() if name_el is not None and name_el.text else system_id,
                 "vm_id": _uuid(system_id), "cpu": {"sockets": 1, "cores": 1, "threads": 1}, "memory": 1 << 30,
                 "os": "other", "nics": [], "disks": [], "description": ""}
    desc = _child(system, "Description")
    if desc is not None and desc.text:
        out["description"] = desc.text.strip()

    os_section = _child(system, "OperatingSystemSection")
    if os_section is not None:
        a = _attrs(os_section)
        try:
            os_id = int(a["ovirt:id"]) if "ovirt:id" in a else CIM_OS.get(int(a.get("id", "0")), 0)
        except ValueError:
            os_id = 0
        out["os"] = OVIRT_OS.get(os_id, "other")

    disks: list[dict] = []
    section = _find(root, "DiskSection")
    for el in section if section is not None else []:
        if _local(el.tag) != "Disk":
            continue
        a = _attrs(el)
        if "diskId" not in a:
            raise OvfError("a Disk of the DiskSection has no ovf:diskId")
        disks.append({"disk_id": a["diskId"], "alias": a.get("disk-alias") or a["diskId"],
                      "description": a.get("description", a["diskId"]),
                      "interface": (a.get("disk-interface") or "VIRTIO_SCSI").lower(),
                      "bootable": a.get("boot", "false").lower() == "true"})

    hardware = _child(system, "VirtualHardwareSection")
    items = [c for c in hardware if _local(c.tag) == "Item"] if hardware is not None else []
    seen: list[dict] = []
    for item in items:
        f = {_local(c.tag): (c.text or "").strip() for c in item}
        kind = f.get("ResourceType")
        if kind == "3":
            if f.get("num_of_sockets"):
                out["cpu"] = {"sockets": int(f["num_of_sockets"]), "cores": int(f.get("cpu_per_socket", 1)),
                              "threads": int(f.get("threads_per_cpu", 1))}
            else:
                total = max(1, int(f.get("VirtualQuantity") or 1))
                cores = next((int(v) for k, v in _attrs(item).items() if k == "CoresPerSocket"), 0) or \
                    next((int(c.text or 1) for c in item if _local(c.tag) == "CoresPerSocket"), 1)
                cores = cores if total % cores == 0 else 1
                out["cpu"] = {"sockets": total // cores, "cores": cores, "threads": 1}
        elif kind == "4":
            out["memory"] = int(f.get("VirtualQuantity") or 1024) * units(f.get("AllocationUnits") or "byte * 2^20")
        elif kind == "10":
            sub = (f.get("ResourceSubType") or "").lower()
            out["nics"].append({"name": f.get("Name") or f.get("ElementName") or f"nic{len(out['nics']) + 1}",
                                "interface": sub if sub in NIC_TYPES else "virtio",
                                "network": f.get("Connection") or "ovirtmgmt", "mac": f.get("MACAddress", "")})
        elif kind == "17":
            ref = f.get("HostResource", "").rsplit("/", 1)[-1]
            disk = next((d for d in disks if ref in (d["description"], d["disk_id"])), None)
            if disk is not None and disk not in seen:
                seen.append(disk)
    # Every disk of the DiskSection, in the order the hardware items name them (the rest after).
    for d in [*seen, *(d for d in disks if d not in seen)]:
        out["disks"].append({"disk_id": d["disk_id"], "interface": d["interface"], "bootable": d["bootable"]})
    if not out["name"]:
        raise OvfError("the OVA configuration names no VM")
    return out
