"""Tag events with the engine's AuditLogType codes and AuditLogMessages texts (issue 19): USER_ADD_TAG 432,
USER_REMOVE_TAG 434, USER_UPDATE_TAG 430 (and USER_MOVE_TAG 555 on a new parent), USER_ATTACH_TAG_TO_VM 440,
USER_ATTACH_TAG_TO_VM_EXISTS 454, USER_DETACH_VM_FROM_TAG 446; read as a follower reads them, with
events_service().list(from_=N): only events with an id above N, newest first. And `follow=tags,cluster` on VMs."""
from __future__ import annotations

import ovirtsdk4.types as types
import pytest

from .conftest import vm_by_name

USER = "admin@internal-authz"


@pytest.fixture(scope="module")
def system(connection):
    return connection.system_service()


def newest_id(system) -> int:
    return int(system.events_service().list(max=1)[0].id)


def since(system, after: int) -> list[tuple[int, str]]:
    """(code, description) of the events after `after`, oldest first."""
    events = system.events_service().list(from_=after)
    ids = [int(e.id) for e in events]
    assert ids == sorted(ids, reverse=True), f"events are not newest first: {ids}"
    assert all(i > after for i in ids)
    return [(e.code, e.description) for e in reversed(events)]


def test_attach_and_detach_log_440_and_446_naming_the_vm(system, connection):
    web1 = vm_by_name(connection, "web1")
    tags = system.vms_service().vm_service(web1.id).tags_service()
    before = newest_id(system)
    tags.add(types.Tag(name="silver"))
    silver = next(g for g in tags.list() if g.name == "silver")
    tags.add(types.Tag(name="silver"))  # already there: the engine's warning, nothing attached twice
    tags.tag_service(silver.id).remove()
    assert since(system, before) == [
        (440, f"Tag silver was attached to VM(s) web1 by {USER}."),
        (454, "Tag silver already attached to VM(s) web1."),
        (446, f"Tag silver was detached from VM(s) web1 by {USER}.")]
    # As the engine's AttachVmsToTagCommand, the events name the VMs in their text only: no vm reference.
    assert all(e.vm is None for e in system.events_service().list(from_=before))
    assert [g.name for g in tags.list()] == ["gold"]


def test_add_update_move_and_remove_log_432_430_555_434(system):
    tags = system.tags_service()
    before = newest_id(system)
    bronze = tags.add(types.Tag(name="bronze", description="Bronze"))
    tags.tag_service(bronze.id).update(types.Tag(description="Bronze policy"))
    tags.tag_service(bronze.id).update(types.Tag(name="copper", parent=types.Tag(name="gold")))
    copper = tags.tag_service(bronze.id).get()
    assert (copper.name, copper.description) == ("copper", "Bronze policy")
    assert copper.parent.id == next(g.id for g in tags.list() if g.name == "gold")
    tags.tag_service(bronze.id).remove()
    assert since(system, before) == [
        (432, f"New Tag bronze was created by {USER}."),
        (430, f"Tag bronze configuration was updated by {USER}."),
        (555, f"Tag bronze was moved from root to gold by {USER}."),
        (430, f"Tag copper configuration was updated by {USER}."),
        (434, f"Tag copper was removed by {USER}.")]


def test_from_lists_only_the_newer_events(system):
    tags = system.tags_service()
    first = tags.add(types.Tag(name="from-a"))
    middle = newest_id(system)
    second = tags.add(types.Tag(name="from-b"))
    assert since(system, middle) == [(432, f"New Tag from-b was created by {USER}.")]
    assert system.events_service().list(from_=newest_id(system)) == []
    tags.tag_service(first.id).remove()
    tags.tag_service(second.id).remove()


def test_follow_inlines_a_vms_tags_and_cluster(system):
    followed = {v.name: v for v in system.vms_service().list(follow="tags,cluster")}
    assert [g.name for g in followed["web1"].tags] == ["gold"]
    assert list(followed["db1"].tags) == []
    assert followed["web1"].cluster.name == "Default"
    plain = system.vms_service().list(search="name=web1")[0]
    assert plain.cluster.name is None and list(plain.tags) == []  # a link only
    one = system.vms_service().vm_service(plain.id).get(follow="tags")
    assert [g.name for g in one.tags] == ["gold"]
