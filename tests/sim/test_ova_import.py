"""A VM created from an OVA's descriptor, a standard DMTF OVF (issue 17, item 8), as upload_ova_as_vm_or_template.py
does it: the OVA's disks are added first with the OVF's disk ids, then POST /vms with configuration type `ova`. The
VM takes the OVF's name, memory, CPUs and OS, and gets the disks the OVF names that exist and are floating."""
from __future__ import annotations

import uuid

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from .conftest import MIB, vm_disks, wait_disk_ok

# The shape VMware exports (ovftool): namespaces without a trailing slash, a disk by its DiskSection id, CPUs as a
# VirtualQuantity, memory in "byte * 2^20", a CIM OS id (80: RHEL 64-bit).
VMWARE_OVF = """<?xml version="1.0" encoding="UTF-8"?>
<Envelope vmw:buildId="build-8169922" xmlns="http://schemas.dmtf.org/ovf/envelope/1"
    xmlns:cim="http://schemas.dmtf.org/wbem/wscim/1/common"
    xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
    xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
    xmlns:vmw="http://www.vmware.com/schema/ovf"
    xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
    <File ovf:href="{name}-disk1.vmdk" ovf:id="file1" ovf:size="1048576"/>
    <File ovf:href="{name}-disk2.vmdk" ovf:id="file2" ovf:size="65536"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="{size}" ovf:capacityAllocationUnits="byte * 2^20" ovf:diskId="{disk1}" ovf:fileRef="file1"
          ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
          ovf:populatedSize="1048576"/>
    <Disk ovf:capacity="{size}" ovf:capacityAllocationUnits="byte * 2^20" ovf:diskId="{disk2}" ovf:fileRef="file2"
          ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection>
    <Info>The list of logical networks</Info>
    <Network ovf:name="VM Network"><Description>The VM Network network</Description></Network>
  </NetworkSection>
  <VirtualSystem ovf:id="{name}">
    <Info>A virtual machine</Info>
    <Name>{name}</Name>
    <OperatingSystemSection ovf:id="80" vmw:osType="rhel7_64Guest">
      <Info>The kind of installed guest operating system</Info>
      <Description>Red Hat Enterprise Linux 7 (64-bit)</Description>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-13</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of Virtual CPUs</rasd:Description>
        <rasd:ElementName>4 virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>4</rasd:VirtualQuantity>
        <vmw:CoresPerSocket ovf:required="false">2</vmw:CoresPerSocket>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Description>Memory Size</rasd:Description>
        <rasd:ElementName>1536MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>1536</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>SCSI Controller</rasd:Description>
        <rasd:ElementName>SCSI controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>VirtualSCSI</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/{disk1}</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>1</rasd:AddressOnParent>
        <rasd:ElementName>Hard disk 2</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/{disk2}</rasd:HostResource>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>7</rasd:AddressOnParent>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>VM Network</rasd:Connection>
        <rasd:Description>VmxNet3 ethernet adapter on "VM Network"</rasd:Description>
        <rasd:ElementName>Network adapter 1</rasd:ElementName>
        <rasd:InstanceID>6</rasd:InstanceID>
        <rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"""

# The shape oVirt's own export to OVA writes: the VM id as the VirtualSystem id, the oVirt OS id beside the CIM one,
# the topology in num_of_sockets/cpu_per_socket, disks with their alias, interface and boot flag.
OVIRT_OVA = """<ovf:Envelope xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1/"
    xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
    xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:ovirt="http://www.ovirt.org/ovf" ovf:version="0.9">
  <References>
    <File ovf:href="{disk1}" ovf:id="{image1}" ovf:size="{size_bytes}"/>
  </References>
  <DiskSection>
    <Info>List of Virtual Disks</Info>
    <Disk ovf:diskId="{disk1}" ovf:fileRef="{image1}" ovf:capacity="{size_bytes}" ovf:populatedSize="0"
          ovf:format="http://www.gnome.org/~markmc/qcow-image-format.html" ovf:boot="true"
          ovf:disk-interface="VirtIO_SCSI" ovf:disk-alias="{name}_Disk1" ovf:disk_storage_type="IMAGE"
          ovf:volume-format="COW" ovf:volume-type="Sparse"/>
  </DiskSection>
  <NetworkSection><Info>List of networks</Info><Network ovf:name="ovirtmgmt"/></NetworkSection>
  <VirtualSystem ovf:id="{vm_id}">
    <Name>{name}</Name>
    <Description>exported from oVirt</Description>
    <OperatingSystemSection ovf:id="80" ovf:required="false" ovirt:id="34">
      <Info>Guest Operating System</Info>
      <Description>rhel_9x64</Description>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>2 CPU, 2048 Memory</Info>
      <Item>
        <rasd:Caption>2 virtual cpu</rasd:Caption>
        <rasd:Description>Number of virtual CPU</rasd:Description>
        <rasd:InstanceId>1</rasd:InstanceId>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:num_of_sockets>1</rasd:num_of_sockets>
        <rasd:cpu_per_socket>2</rasd:cpu_per_socket>
        <rasd:threads_per_cpu>1</rasd:threads_per_cpu>
        <rasd:max_num_of_vcpus>16</rasd:max_num_of_vcpus>
        <rasd:VirtualQuantity>2</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Caption>2048 MB of memory</rasd:Caption>
        <rasd:Description>Memory Size</rasd:Description>
        <rasd:InstanceId>2</rasd:InstanceId>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits>
        <rasd:VirtualQuantity>2048</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Caption>{name}_Disk1</rasd:Caption>
        <rasd:InstanceId>{disk1}</rasd:InstanceId>
        <rasd:ResourceType>17</rasd:ResourceType>
        <rasd:HostResource>ovf:/disk/{disk1}</rasd:HostResource>
        <rasd:Parent>00000000-0000-0000-0000-000000000000</rasd:Parent>
      </Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</ovf:Envelope>
"""


def _floating_disk(connection, name: str, size: int = 8 * MIB) -> str:
    """A disk added with an id of our choosing, as the OVA upload example adds each disk of the OVA."""
    disk_id = str(uuid.uuid4())
    disk = connection.system_service().disks_service().add(types.Disk(
        id=disk_id, name=name, provisioned_size=size, format=types.DiskFormat.COW, sparse=True,
        storage_domains=[types.StorageDomain(name="data1")]))
    assert disk.id == disk_id
    wait_disk_ok(connection, disk_id)
    return disk_id


def _import(vms, ovf: str, **kw) -> types.Vm:
    return vms.add(types.Vm(cluster=types.Cluster(name="Default"), initialization=types.Initialization(
        configuration=types.Configuration(type=types.ConfigurationType.OVA, data=ovf)), **kw))


def test_a_vmware_ova_makes_a_vm_with_its_disks_and_hardware(connection, vms):
    disk1, disk2 = _floating_disk(connection, "ova1-disk1"), _floating_disk(connection, "ova1-disk2")
    vm = _import(vms, VMWARE_OVF.format(name="ova1", size=8, disk1=disk1, disk2=disk2))
    assert vm.name == "ova1"
    vm = vms.vm_service(vm.id).get()
    assert vm.memory == 1536 * MIB
    topology = vm.cpu.topology
    assert (topology.sockets, topology.cores, topology.sockets * topology.cores * topology.threads) == (2, 2, 4)
    assert vm.os.type == "other_linux"  # CIM 80 maps to Other Linux, as the engine maps it
    disks = vm_disks(connection, vm)
    assert sorted(d.id for d in disks.values()) == sorted([disk1, disk2])
    assert [n.name for n in vms.vm_service(vm.id).nics_service().list()] == ["Network adapter 1"]


def test_an_ovirt_ova_keeps_its_vm_id_os_topology_and_disk_flags(connection, vms):
    disk1 = _floating_disk(connection, "ova2_Disk1", 16 * MIB)
    vm_id = str(uuid.uuid4())
    vm = _import(vms, OVIRT_OVA.format(name="ova2", vm_id=vm_id, disk1=disk1, image1=str(uuid.uuid4()),
                                       size_bytes=16 * MIB))
    assert (vm.id, vm.name) == (vm_id, "ova2")
    vm = vms.vm_service(vm_id).get()
    assert (vm.memory, vm.cpu.topology.sockets, vm.cpu.topology.cores, vm.os.type) == (2048 * MIB, 1, 2, "rhel_9x64")
    assert vm.description == "exported from oVirt"
    atts = vms.vm_service(vm_id).disk_attachments_service().list()
    assert [(a.disk.id, a.interface, a.bootable) for a in atts] == [(disk1, types.DiskInterface.VIRTIO_SCSI, True)]


def test_an_ova_whose_disks_are_not_there_makes_a_vm_without_disks(connection, vms):
    vm = _import(vms, VMWARE_OVF.format(name="ova3", size=8, disk1="vmdisk1", disk2="vmdisk2"))
    assert vm.name == "ova3" and vm.memory == 1536 * MIB
    assert vm_disks(connection, vm) == {}


def test_an_ova_without_a_virtual_system_is_refused(vms):
    with pytest.raises(sdk.Error) as refused:
        _import(vms, "<Envelope xmlns='http://schemas.dmtf.org/ovf/envelope/1'><References/></Envelope>", name="bad")
    assert refused.value.code == 400 and "VirtualSystem" in str(refused.value)
    assert vms.list(search="name=bad") == []
