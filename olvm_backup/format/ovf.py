"""The oVirt OVF of a VM, as pure logic: read what a restore needs, and drop the disks from it.

A restore creates fresh disks itself (new ids, chosen storage domain) and
attaches them afterwards, so the VM is imported from an OVF without its disk
references: the engine must not attach the original disks to the copy.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET

from ..errors import BackupError

OVF_NS = "http://schemas.dmtf.org/ovf/envelope/1/"
RASD_NS = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
DISK_RESOURCE_TYPE = "17"


class OvfError(BackupError):
    template = "OVF: {reason}"


def _parse(ovf: str) -> ET.Element:
    try:
        return ET.fromstring(ovf.strip())
    except ET.ParseError as e:
        raise OvfError(f"not XML ({e})") from None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _register_namespaces(ovf: str) -> None:
    # Keep the engine's prefixes (ovf:, rasd:, xsi:...) when writing back.
    import io
    for _, (prefix, uri) in ET.iterparse(io.StringIO(ovf), events=["start-ns"]):
        ET.register_namespace(prefix, uri)


def vm_name(ovf: str) -> str | None:
    root = _parse(ovf)
    for el in root.iter():
        if _local(el.tag) == "Name" and el.text:
            return el.text.strip()
    return None


def without_disks(ovf: str) -> str:
    """The same OVF with every disk reference removed (files, disk section, disk hardware items)."""
    _register_namespaces(ovf)
    root = _parse(ovf)
    for parent in list(root.iter()):
        for child in list(parent):
            name = _local(child.tag)
            drop = False
            if name == "References":
                drop = True
            elif name == "Section" and "DiskSection" in (child.get(f"{{{XSI_NS}}}type") or ""):
                drop = True
            elif name == "Item":
                rtype = next((c.text for c in child if _local(c.tag) == "ResourceType"), None)
                drop = (rtype or "").strip() == DISK_RESOURCE_TYPE
            if drop:
                parent.remove(child)
    return ET.tostring(root, encoding="unicode")
