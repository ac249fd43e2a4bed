"""Disks added through POST /disks as the engine takes them: with an id the client chose, the disk has that id (the
engine's `usePassedDiskId`), which is how a client that loses the answer can still find and remove what it made;
the same id twice is refused, and the first disk stays as it was."""
from __future__ import annotations

import uuid

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from .conftest import MIB, wait_disk_ok, wait_gone


def _disk(disk_id: str | None, name: str) -> types.Disk:
    return types.Disk(id=disk_id, name=name, format=types.DiskFormat.COW, provisioned_size=8 * MIB, sparse=True,
                      storage_domains=[types.StorageDomain(name="data1")])


def test_a_client_chosen_disk_id_is_honoured(connection):
    disks = connection.system_service().disks_service()
    chosen = str(uuid.uuid4())
    added = disks.add(_disk(chosen, "chosen1"))
    assert added.id == chosen
    assert wait_disk_ok(connection, chosen).name == "chosen1"
    assert chosen in [d.id for d in disks.list(search="name=chosen1")]

    with pytest.raises(sdk.Error) as refused:
        disks.add(_disk(chosen, "chosen2"))
    assert refused.value.code == 409 and chosen in str(refused.value), refused.value
    assert disks.disk_service(chosen).get().name == "chosen1"
    assert disks.list(search="name=chosen2") == []

    disks.disk_service(chosen).remove()
    wait_gone(disks.disk_service(chosen).get, what=f"disk {chosen}")


def test_without_an_id_the_engine_picks_one(connection):
    disks = connection.system_service().disks_service()
    added = disks.add(_disk(None, "picked1"))
    assert uuid.UUID(added.id)
    wait_disk_ok(connection, added.id)
    disks.disk_service(added.id).remove()
    wait_gone(disks.disk_service(added.id).get, what=f"disk {added.id}")
