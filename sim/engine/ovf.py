"""The oVirt OVF of a VM: written the way the engine's OvfWriter lays it out, and read back for imports."""
from __future__ import annotations

import xml.etree.ElementTree as ET

OVF = "http://schemas.dmtf.org/ovf/envelope/1/"
RASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
VSSD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
GIB = 1 << 30

for prefix, uri in (("ovf", OVF), ("rasd", RASD), ("vssd", VSSD), ("xsi", XSI)):
    ET.register_namespace(prefix, uri)


class OvfError(ValueError):
    pass


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs) -> ET.Element:
    el = ET.SubElement(parent, tag, {k: str(v) for k, v in attrs.items()})
    if text is not None:
        el.text = str(text)
    return el


def write(vm: dict, cluster_name: str, disks: list[tuple[dict, dict]]) -> str:
    """OVF for vm; disks = [(disk, attachment)]."""
    root = ET.Element(f"{{{OVF}}}Envelope", {f"{{{OVF}}}version": "4.5"})
    refs = _sub(root, "References")
    for disk, _ in disks:
        _sub(refs, "File", **{f"{{{OVF}}}href": f"{disk['id']}/{disk['image_id']}", f"{{{OVF}}}id": disk["image_id"],
                              f"{{{OVF}}}size": disk["provisioned_size"], f"{{{OVF}}}description": disk["name"]})
    section = _sub(root, "Section", **{f"{{{XSI}}}type": "ovf:DiskSection_Type"})
    _sub(section, "Info", "List of Virtual Disks")
    for disk, att in disks:
        _sub(section, "Disk", **{
            f"{{{OVF}}}diskId": disk["image_id"], f"{{{OVF}}}size": max(1, disk["provisioned_size"] // GIB),
            f"{{{OVF}}}actual_size": 0, f"{{{OVF}}}fileRef": f"{disk['id']}/{disk['image_id']}",
            f"{{{OVF}}}format": "http://www.vmware.com/specifications/vmdk.html#sparse",
            f"{{{OVF}}}volume-format": "COW" if disk["format"] == "cow" else "RAW",
            f"{{{OVF}}}volume-type": "Sparse" if disk.get("sparse", True) else "Preallocated",
            f"{{{OVF}}}disk-interface": att["interface"].upper(), f"{{{OVF}}}boot": str(att["bootable"]).lower(),
            f"{{{OVF}}}disk-alias": disk["name"], f"{{{OVF}}}wipe-after-delete": "false",
            f"{{{OVF}}}incremental-backup": str(disk.get("backup") == "incremental").lower()})
    content = _sub(root, "Content", **{f"{{{OVF}}}id": "out", f"{{{XSI}}}type": "ovf:VirtualSystem_Type"})
    _sub(content, "Name", vm["name"])
    _sub(content, "Description", vm.get("description", ""))
    _sub(content, "TemplateId", vm.get("template_id") or "00000000-0000-0000-0000-000000000000")
    _sub(content, "ClusterName", cluster_name)
    _sub(content, "VmType", "1")
    _sub(content, "MaxMemorySizeMb", vm["memory"] * 4 // (1 << 20))
    osec = _sub(content, "Section", **{f"{{{OVF}}}id": vm["id"], f"{{{OVF}}}required": "false",
                                       f"{{{XSI}}}type": "ovf:OperatingSystemSection_Type"})
    _sub(osec, "Info", "Guest Operating System")
    _sub(osec, "Description", vm["os"])
    hw = _sub(content, "Section", **{f"{{{XSI}}}type": "ovf:VirtualHardwareSection_Type"})
    _sub(hw, "Info", f"{vm['cpu']['sockets'] * vm['cpu']['cores'] * vm['cpu']['threads']} CPU, "
                     f"{vm['memory'] // (1 << 20)} Memory")
    cpu = _sub(hw, "Item")
    _sub(cpu, f"{{{RASD}}}Caption", f"{vm['cpu']['sockets'] * vm['cpu']['cores'] * vm['cpu']['threads']} virtual cpu")
    _sub(cpu, f"{{{RASD}}}InstanceId", "1")
    _sub(cpu, f"{{{RASD}}}ResourceType", "3")
    _sub(cpu, f"{{{RASD}}}num_of_sockets", vm["cpu"]["sockets"])
    _sub(cpu, f"{{{RASD}}}cpu_per_socket", vm["cpu"]["cores"])
    _sub(cpu, f"{{{RASD}}}threads_per_cpu", vm["cpu"]["threads"])
    mem = _sub(hw, "Item")
    _sub(mem, f"{{{RASD}}}Caption", f"{vm['memory'] // (1 << 20)} MB of memory")
    _sub(mem, f"{{{RASD}}}InstanceId", "2")
    _sub(mem, f"{{{RASD}}}ResourceType", "4")
    _sub(mem, f"{{{RASD}}}AllocationUnits", "MegaBytes")
    _sub(mem, f"{{{RASD}}}VirtualQuantity", vm["memory"] // (1 << 20))
    for disk, att in disks:
        item = _sub(hw, "Item")
        _sub(item, f"{{{RASD}}}Caption", disk["name"])
        _sub(item, f"{{{RASD}}}InstanceId", disk["image_id"])
        _sub(item, f"{{{RASD}}}ResourceType", "17")
        _sub(item, f"{{{RASD}}}HostResource", f"{disk['id']}/{disk['image_id']}")
        _sub(item, f"{{{RASD}}}Parent", "00000000-0000-0000-0000-000000000000")
        _sub(item, "IsReadOnly", "false")
        _sub(item, "BootOrder", "1" if att["bootable"] else "0")
    for i, nic in enumerate(vm.get("nics", [])):
        item = _sub(hw, "Item")
        _sub(item, f"{{{RASD}}}Caption", f"Ethernet adapter on {nic['network']}")
        _sub(item, f"{{{RASD}}}InstanceId", nic.get("id", str(i)))
        _sub(item, f"{{{RASD}}}ResourceType", "10")
        _sub(item, f"{{{RASD}}}ResourceSubType", nic["interface"])
        _sub(item, f"{{{RASD}}}Connection", nic["network"])
        _sub(item, f"{{{RASD}}}Name", nic["name"])
        _sub(item, f"{{{RASD}}}MACAddress", nic.get("mac", ""))
    return ET.tostring(root, encoding="unicode")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def read(text: str) -> dict:
    """What an import takes from an OVF: name, VM id (the OS section's ovf:id, as the engine writes and reads it),
    CPU, memory, OS, NICs and disk references (disk id, interface, bootable)."""
    try:
        root = ET.fromstring(text.strip())
    except ET.ParseError as e:
        raise OvfError(f"the OVF configuration is not XML: {e}") from None
    if _local(root.tag) != "Envelope":
        raise OvfError("the OVF configuration has no ovf:Envelope")
    out: dict = {"name": None, "vm_id": None, "cpu": {"sockets": 1, "cores": 1, "threads": 1}, "memory": 1 << 30,
                 "os": "other", "nics": [], "disks": [], "description": ""}
    content = next((el for el in root.iter() if _local(el.tag) == "Content"), None)
    if content is None:
        raise OvfError("the OVF configuration has no Content section")
    for child in content:
        if _local(child.tag) == "Name":
            out["name"] = (child.text or "").strip()
        elif _local(child.tag) == "Description":
            out["description"] = (child.text or "").strip()
    disk_attrs = {}
    for el in root.iter():
        if _local(el.tag) == "Disk":
            attrs = {_local(k): v for k, v in el.attrib.items()}
            disk_attrs[attrs.get("diskId")] = attrs
        elif _local(el.tag) == "Section" and "OperatingSystemSection" in (el.get(f"{{{XSI}}}type") or ""):
            out["vm_id"] = el.get(f"{{{OVF}}}id") or None
            desc = next((c.text for c in el if _local(c.tag) == "Description"), None)
            if desc:
                out["os"] = desc.strip()
    for item in (el for el in root.iter() if _local(el.tag) == "Item"):
        f = {_local(c.tag): (c.text or "").strip() for c in item}
        kind = f.get("ResourceType")
        if kind == "3":
            out["cpu"] = {"sockets": int(f.get("num_of_sockets", 1)), "cores": int(f.get("cpu_per_socket", 1)),
                          "threads": int(f.get("threads_per_cpu", 1))}
        elif kind == "4":
            out["memory"] = int(f.get("VirtualQuantity", 1024)) << 20
        elif kind == "10":
            out["nics"].append({"name": f.get("Name", "nic"), "interface": f.get("ResourceSubType", "virtio"),
                                "network": f.get("Connection", "ovirtmgmt"), "mac": f.get("MACAddress", "")})
        elif kind == "17":
            disk_id, _, image_id = f.get("HostResource", "").partition("/")
            attrs = disk_attrs.get(image_id, {})
            out["disks"].append({"disk_id": disk_id, "interface": attrs.get("disk-interface", "VIRTIO_SCSI").lower(),
                                 "bootable": attrs.get("boot", "false") == "true"})
    if not out["name"]:
        raise OvfError("the OVF configuration names no VM")
    return out
