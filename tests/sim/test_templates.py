"""Templates (issue 17, item 7): the Blank template, a template made from a down VM (its disks copied, locked
until done), a VM made from a template (copies of the template's disks with the template's aliases and content, the
template's configuration, its `template` reference), and the refusals the engine makes: a running VM, removing
Blank, removing a template a VM is based on."""
from __future__ import annotations

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from .conftest import MIB, vm_by_name, vm_disks, wait_for, wait_gone

BLANK = "00000000-0000-0000-0000-000000000000"


@pytest.fixture(scope="module")
def templates(connection):
    return connection.system_service().templates_service()


@pytest.fixture(scope="module")
def tpl(connection, templates):
    """A template of db1 (down, one 32 MiB raw disk with content), waited until ok."""
    db1 = vm_by_name(connection, "db1")
    made = templates.add(types.Template(name="tpl1", description="from db1", vm=types.Vm(id=db1.id)))
    assert made.id and made.name == "tpl1"
    assert made.status == types.TemplateStatus.LOCKED
    svc = templates.template_service(made.id)
    return wait_for(svc.get, lambda g: g.status == types.TemplateStatus.OK, timeout=60, what="template ok")


def test_blank_is_always_there_and_cannot_be_removed(templates):
    found = templates.list(search="name=Blank")
    assert [(g.id, g.name) for g in found] == [(BLANK, "Blank")]
    assert templates.template_service(BLANK).get().name == "Blank"
    with pytest.raises(sdk.Error) as refused:
        templates.template_service(BLANK).remove()
    assert refused.value.code == 400
    assert BLANK in {g.id for g in templates.list()}


def test_a_running_vm_makes_no_template(connection, templates):
    web1 = vm_by_name(connection, "web1")
    with pytest.raises(sdk.Error) as refused:
        templates.add(types.Template(name="tpl_up", vm=types.Vm(id=web1.id)))
    assert refused.value.code == 409
    assert templates.list(search="name=tpl_up") == []


def test_a_template_has_the_vms_configuration_and_copies_of_its_disks(connection, templates, tpl):
    db1 = vm_by_name(connection, "db1")
    assert db1.status == types.VmStatus.DOWN
    assert (tpl.memory, tpl.cpu.topology.sockets, tpl.os.type) == (db1.memory, 2, db1.os.type)
    assert [g.id for g in templates.list(search="name=tpl1")] == [tpl.id]
    atts = connection.follow_link(tpl.disk_attachments)
    assert len(atts) == 1 and atts[0].template.id == tpl.id
    disk = connection.follow_link(atts[0].disk)
    source = vm_disks(connection, db1)["db1_disk"]
    assert disk.id != source.id
    assert (disk.alias, disk.provisioned_size, disk.format, disk.status) == \
        ("db1_disk", 32 * MIB, types.DiskFormat.RAW, types.DiskStatus.OK)


def test_a_vm_from_a_template_gets_its_disks_content_and_configuration(sim, connection, vms, tpl):
    vm = vms.add(types.Vm(name="fromtpl", cluster=types.Cluster(name="Default"), template=types.Template(name="tpl1")))
    assert vm.template.id == tpl.id
    svc = vms.vm_service(vm.id)
    vm = wait_for(svc.get, lambda v: v.status == types.VmStatus.DOWN, timeout=60, what="VM from template down")
    assert connection.follow_link(vm.template).id == tpl.id
    assert (vm.memory, vm.cpu.topology.sockets, vm.cpu.topology.cores, vm.os.type) == \
        (tpl.memory, tpl.cpu.topology.sockets, tpl.cpu.topology.cores, tpl.os.type)
    disks = vm_disks(connection, vm)
    assert list(disks) == ["db1_disk"]  # the template disk's alias
    template_disk = connection.follow_link(connection.follow_link(tpl.disk_attachments)[0].disk)
    mine = disks["db1_disk"]
    assert mine.id not in (template_disk.id, vm_disks(connection, vm_by_name(connection, "db1"))["db1_disk"].id)
    assert (mine.provisioned_size, mine.format) == (template_disk.provisioned_size, template_disk.format)
    assert sim.checksum("fromtpl", "db1_disk") == sim.checksum("db1", "db1_disk")


def test_a_template_in_use_is_not_removed(connection, vms, templates, tpl):
    vm = vm_by_name(connection, "fromtpl")
    with pytest.raises(sdk.Error) as refused:
        templates.template_service(tpl.id).remove()
    assert refused.value.code == 409 and "fromtpl" in str(refused.value)
    vms.vm_service(vm.id).remove()
    disk_ids = [a.disk.id for a in connection.follow_link(tpl.disk_attachments)]
    templates.template_service(tpl.id).remove()
    wait_gone(templates.template_service(tpl.id).get)
    for disk_id in disk_ids:
        wait_gone(connection.system_service().disks_service().disk_service(disk_id).get)


def test_a_vm_from_blank_has_no_disks(connection, vms):
    vm = vms.add(types.Vm(name="fromblank", cluster=types.Cluster(name="Default"),
                          template=types.Template(id=BLANK), memory=256 * MIB))
    assert (vm.template.id, vm.memory, vm.status) == (BLANK, 256 * MIB, types.VmStatus.DOWN)
    assert vm_disks(connection, vm) == {}
    vms.vm_service(vm.id).remove()
