"""Entities as the engine's XML, written by ovirtsdk4's own writers so the SDK's readers take them as real."""
from __future__ import annotations

import datetime
import uuid
import xml.etree.ElementTree as ET

import ovirtsdk4.types as t
from ovirtsdk4.writer import Writer

from .state import ROOT_TAG_ID

API = "/ovirt-engine/api"
BLANK_TEMPLATE_ID = "00000000-0000-0000-0000-000000000000"
# The engine's predefined SuperUser role and admin@internal user (PredefinedRoles / PredefinedUsers).
SUPER_USER_ROLE_ID = "00000000-0000-0000-0000-000000000001"
ADMIN_USER_ID = "fdfc627c-d875-11e0-90f0-83df133b58cc"
# The sub-collections the engine lists as <link rel=R href=ENTITY/R/> in an entity (the API model's @Link lists),
# only those the simulator serves.
LINKS = {t.Vm: ("backups", "checkpoints", "diskattachments", "nics", "permissions", "snapshots", "tags"),
         t.Template: ("diskattachments", "nics", "permissions", "tags"),
         t.Disk: ("disksnapshots", "permissions"),
         t.StorageDomain: ("disks", "disksnapshots", "permissions"),
         t.Cluster: ("permissions",), t.Host: ("permissions",), t.DataCenter: ("permissions",)}


def _date(text: str | None) -> datetime.datetime | None:
    return datetime.datetime.fromisoformat(text) if text else None


def _href(obj, path: str):
    obj.href = f"{API}/{path}"
    return obj


def _ref(obj, path: str):
    """A nested reference with its href, as the engine renders it (None when there is no id)."""
    return _href(obj, path) if obj.id else None


def xml(obj, root: str | None = None) -> str:
    """The SDK writer's XML, plus the <link> elements the engine adds to each entity (the writer emits none)."""
    text = Writer.write(obj, root=root)
    objs = obj if isinstance(obj, list) else [obj]
    if not any(type(o) in LINKS and o.href for o in objs):
        return text
    doc = ET.fromstring(text)
    for el, o in zip(list(doc) if isinstance(obj, list) else [doc], objs, strict=True):
        for rel in LINKS.get(type(o), ()) if o.href else ():
            ET.SubElement(el, "link", {"href": f"{o.href}/{rel}", "rel": rel})
    return ET.tostring(doc, encoding="unicode")


def action(status: str = "complete", **extra) -> str:
    return xml(t.Action(status=status, **extra))


def fault(reason: str, detail: str) -> str:
    return xml(t.Fault(reason=reason, detail=detail))


def api_root(state) -> t.Api:
    vms = state.table("vms").values()
    up = sum(1 for v in vms if v["status"] == "up")
    return t.Api(
        product_info=t.ProductInfo(name="oVirt Engine", vendor="ovirt.org", version=t.Version(
            build=7, full_version="4.5.7", major=4, minor=5, revision=0)),
        summary=t.ApiSummary(
            hosts=t.ApiSummaryItem(active=len(state.table("hosts")), total=len(state.table("hosts"))),
            storage_domains=t.ApiSummaryItem(active=len(state.table("storage_domains")),
                                             total=len(state.table("storage_domains"))),
            users=t.ApiSummaryItem(active=1, total=1),
            vms=t.ApiSummaryItem(active=up, total=len(state.table("vms")))),
        time=datetime.datetime.now(datetime.timezone.utc))


def data_center(dc: dict) -> t.DataCenter:
    return _href(t.DataCenter(id=dc["id"], name=dc["name"], status=t.DataCenterStatus.UP, local=False),
                 f"datacenters/{dc['id']}")


def cluster(c: dict) -> t.Cluster:
    dc = c["data_center_id"]
    return _href(t.Cluster(id=c["id"], name=c["name"], data_center=_ref(t.DataCenter(id=dc), f"datacenters/{dc}")),
                 f"clusters/{c['id']}")


def host(h: dict) -> t.Host:
    return _href(t.Host(id=h["id"], name=h["name"], address="127.0.0.1", status=t.HostStatus.UP,
                        cluster=_ref(t.Cluster(id=h["cluster_id"]), f"clusters/{h['cluster_id']}")), f"hosts/{h['id']}")


def storage_domain(sd: dict, used: int) -> t.StorageDomain:
    return _href(t.StorageDomain(
        id=sd["id"], name=sd["name"], type=t.StorageDomainType.DATA, status=t.StorageDomainStatus.ACTIVE,
        external_status=t.ExternalStatus.OK, available=sd.get("available", 1 << 40), used=used,
        storage=t.HostStorage(type=t.StorageType.NFS),
        data_centers=[_ref(t.DataCenter(id=sd["data_center_id"]), f"datacenters/{sd['data_center_id']}")]),
        f"storagedomains/{sd['id']}")


def vm(v: dict, ovf: str | None = None) -> t.Vm:
    obj = t.Vm(
        id=v["id"], name=v["name"], description=v.get("description", ""), status=t.VmStatus(v["status"]),
        memory=v["memory"], cpu=t.Cpu(topology=t.CpuTopology(**v["cpu"])), os=t.OperatingSystem(type=v["os"]),
        cluster=_ref(t.Cluster(id=v["cluster_id"]), f"clusters/{v['cluster_id']}"),
        host=_ref(t.Host(id=v["host_id"]), f"hosts/{v['host_id']}") if v["status"] == "up" else None,
        template=_ref(t.Template(id=v.get("template_id") or BLANK_TEMPLATE_ID),
                      f"templates/{v.get('template_id') or BLANK_TEMPLATE_ID}"),
        original_template=_ref(t.Template(id=v.get("template_id") or BLANK_TEMPLATE_ID),
                               f"templates/{v.get('template_id') or BLANK_TEMPLATE_ID}"),
        creation_time=_date(v.get("created")), stateless=False, type=t.VmType.SERVER,
        nics=[t.Nic(id=n["id"], name=n["name"], interface=t.NicInterface(n["interface"]),
                    mac=t.Mac(address=n.get("mac", "")),
                    vnic_profile=t.VnicProfile(name=n["network"])) for n in v.get("nics", [])],
        guest_operating_system=t.GuestOperatingSystem(family="Linux", distribution=v["os"])
        if v.get("guest_agent") and v["status"] == "up" else None,
        initialization=t.Initialization(configuration=t.Configuration(type=t.ConfigurationType.OVF, data=ovf))
        if ovf is not None else None)
    return _href(obj, f"vms/{v['id']}")


def nic(vm_id: str, n: dict) -> t.Nic:
    return _href(t.Nic(id=n["id"], name=n["name"], interface=t.NicInterface(n["interface"]),
                       mac=t.Mac(address=n.get("mac", "")), vm=_ref(t.Vm(id=vm_id), f"vms/{vm_id}"),
                       vnic_profile=t.VnicProfile(name=n["network"])), f"vms/{vm_id}/nics/{n['id']}")


def disk(d: dict, actual_size: int = 0, *, backup_mode: str | None = None, snapshot_id: str | None = None) -> t.Disk:
    sd, tpl = d["storage_domain_id"], d.get("template_id")
    obj = t.Disk(
        id=d["id"], name=d["name"], alias=d["name"], description=d.get("description", ""),
        provisioned_size=d["provisioned_size"], actual_size=actual_size, total_size=actual_size,
        format=t.DiskFormat(d["format"]), sparse=d.get("sparse", True), status=t.DiskStatus(d["status"]),
        content_type=t.DiskContentType(d.get("content_type", "data")), storage_type=t.DiskStorageType.IMAGE,
        backup=t.DiskBackup(d.get("backup", "none")), image_id=d["image_id"], shareable=False,
        backup_mode=t.DiskBackupMode(backup_mode) if backup_mode else None,
        snapshot=t.Snapshot(id=snapshot_id) if snapshot_id else None,
        storage_domains=[_ref(t.StorageDomain(id=sd), f"storagedomains/{sd}")],
        template=_ref(t.Template(id=tpl), f"templates/{tpl}") if tpl else None)
    return _href(obj, f"disks/{d['id']}")


def attachment(a: dict, d: dict) -> t.DiskAttachment:
    return _href(t.DiskAttachment(
        id=a["disk_id"], active=a["active"], bootable=a["bootable"], interface=t.DiskInterface(a["interface"]),
        pass_discard=False, read_only=a.get("read_only", False), uses_scsi_reservation=False,
        disk=_href(t.Disk(id=d["id"], snapshot=t.Snapshot(id=a["snapshot_id"]) if a.get("snapshot_id") else None),
                   f"disks/{d['id']}"),
        vm=_ref(t.Vm(id=a["vm_id"]), f"vms/{a['vm_id']}")), f"vms/{a['vm_id']}/diskattachments/{a['disk_id']}")


def snapshot(s: dict, ovf: str | None = None) -> t.Snapshot:
    obj = t.Snapshot(
        id=s["id"], description=s["description"], date=_date(s["date"]),
        snapshot_status=t.SnapshotStatus(s["status"]), snapshot_type=t.SnapshotType(s["type"]),
        persist_memorystate=s.get("persist_memorystate", False), vm=_ref(t.Vm(id=s["vm_id"]), f"vms/{s['vm_id']}"),
        initialization=t.Initialization(configuration=t.Configuration(type=t.ConfigurationType.OVF, data=ovf))
        if ovf is not None else None)
    return _href(obj, f"vms/{s['vm_id']}/snapshots/{s['id']}")


def disk_snapshot(ds_id: str, d: dict, parent: str | None, status: str = "ok", *, actual_size: int | None = None,
                  provisioned_size: int | None = None, vm_id: str | None = None,
                  snapshot_id: str | None = None) -> t.DiskSnapshot:
    """One volume of a disk's chain: its id is the volume's (image) id, `snapshot` the VM snapshot it belongs to."""
    return _href(t.DiskSnapshot(
        id=ds_id, image_id=ds_id, name=d["name"], alias=d["name"], format=t.DiskFormat(d["format"]),
        provisioned_size=provisioned_size or d["provisioned_size"], status=t.DiskStatus(status),
        actual_size=actual_size, total_size=actual_size,
        snapshot=_ref(t.Snapshot(id=snapshot_id), f"vms/{vm_id}/snapshots/{snapshot_id}") if vm_id else None,
        disk=_ref(t.Disk(id=d["id"]), f"disks/{d['id']}"),
        parent=_ref(t.DiskSnapshot(id=parent), f"storagedomains/{d['storage_domain_id']}/disksnapshots/{parent}")
        if parent else None,
        storage_domains=[_ref(t.StorageDomain(id=d["storage_domain_id"]), f"storagedomains/{d['storage_domain_id']}")]),
        f"storagedomains/{d['storage_domain_id']}/disksnapshots/{ds_id}")


def checkpoint(c: dict) -> t.Checkpoint:
    return _href(t.Checkpoint(
        id=c["id"], parent_id=c.get("parent_id"), creation_date=_date(c["created"]),
        state=t.CheckpointState(c["state"]),
        description=c.get("description"), vm=_ref(t.Vm(id=c["vm_id"]), f"vms/{c['vm_id']}"),
        disks=[t.Disk(id=d) for d in c["disks"]]),
        f"vms/{c['vm_id']}/checkpoints/{c['id']}")


def backup(b: dict) -> t.Backup:
    return _href(t.Backup(
        id=b["id"], phase=t.BackupPhase(b["phase"]), creation_date=_date(b["created"]),
        modification_date=_date(b.get("modified") or b["created"]), description=b.get("description"),
        from_checkpoint_id=b.get("from_checkpoint_id"),
        to_checkpoint_id=b.get("to_checkpoint_id") if b["phase"] not in ("initializing",) else None,
        vm=_href(t.Vm(id=b["vm_id"]), f"vms/{b['vm_id']}"), host=_ref(t.Host(id=b["host_id"]), f"hosts/{b['host_id']}"),
        snapshot=_ref(t.Snapshot(id=b["snapshot_id"]), f"vms/{b['vm_id']}/snapshots/{b['snapshot_id']}")
        if b.get("snapshot_id") else None),
        f"vms/{b['vm_id']}/backups/{b['id']}")


def transfer(x: dict) -> t.ImageTransfer:
    return _href(t.ImageTransfer(
        id=x["id"], phase=t.ImageTransferPhase(x["phase"]), direction=t.ImageTransferDirection(x["direction"]),
        format=t.DiskFormat(x["format"]), active=x.get("active", False), transferred=x.get("transferred", 0),
        inactivity_timeout=x["inactivity_timeout"], timeout_policy=t.ImageTransferTimeoutPolicy(x["timeout_policy"]),
        shallow=x.get("shallow", False), transfer_url=x.get("transfer_url"), proxy_url=x.get("proxy_url"),
        disk=_ref(t.Disk(id=x["disk_id"]), f"disks/{x['disk_id']}"),
        image=_ref(t.Image(id=x["disk_id"]), f"images/{x['disk_id']}"),
        snapshot=t.DiskSnapshot(id=x["snapshot_id"]) if x.get("snapshot_id") else None,
        backup=t.Backup(id=x["backup_id"]) if x.get("backup_id") else None,
        host=_href(t.Host(id=x["host_id"]), f"hosts/{x['host_id']}")), f"imagetransfers/{x['id']}")


def tag(g: dict) -> t.Tag:
    parent = g.get("parent_id") or (ROOT_TAG_ID if g["id"] != ROOT_TAG_ID else None)
    return _href(t.Tag(id=g["id"], name=g["name"], description=g.get("description", ""),
                       parent=_href(t.Tag(id=parent), f"tags/{parent}") if parent else None), f"tags/{g['id']}")


def event(e: dict) -> t.Event:
    return _href(t.Event(
        id=e["id"], index=int(e["id"]), code=e["code"], description=e["description"],
        severity=t.LogSeverity(e["severity"]), time=_date(e["time"]), origin=e.get("origin", "oVirt"),
        custom_id=e.get("custom_id", -1), correlation_id=e.get("correlation_id"),
        vm=_ref(t.Vm(id=e["vm_id"]), f"vms/{e['vm_id']}") if e.get("vm_id") else None), f"events/{e['id']}")


def job(j: dict) -> t.Job:
    return _href(t.Job(id=j["id"], description=j["description"], status=t.JobStatus(j["status"]),
                       start_time=_date(j["start"]), end_time=_date(j.get("end")), auto_cleared=True,
                       external=False, last_updated=_date(j.get("end") or j["start"])), f"jobs/{j['id']}")


def permission(collection: str, entity_id: str) -> t.Permission:
    """The one permission the simulator knows: admin@internal's SuperUser role, listed on every entity (the engine
    lists it there, inherited from the system object)."""
    kind = {"vms": "vm", "disks": "disk", "templates": "template", "clusters": "cluster", "hosts": "host",
            "datacenters": "data_center", "storagedomains": "storage_domain"}[collection]
    cls = {"vm": t.Vm, "disk": t.Disk, "template": t.Template, "cluster": t.Cluster, "host": t.Host,
           "data_center": t.DataCenter, "storage_domain": t.StorageDomain}[kind]
    pid = str(uuid.uuid5(uuid.UUID(ADMIN_USER_ID), f"{collection}/{entity_id}"))
    return _href(t.Permission(
        id=pid, role=_href(t.Role(id=SUPER_USER_ROLE_ID, name="SuperUser"), f"roles/{SUPER_USER_ROLE_ID}"),
        user=_href(t.User(id=ADMIN_USER_ID, user_name="admin@internal"), f"users/{ADMIN_USER_ID}"),
        **{kind: _href(cls(id=entity_id), f"{collection}/{entity_id}")}), f"{collection}/{entity_id}/permissions/{pid}")
