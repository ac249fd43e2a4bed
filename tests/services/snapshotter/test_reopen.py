"""A disk whose imageio ticket is gone: its transfer re-opened and its tasks sent again, a bounded number of times;
otherwise the backup fails naming the disk, the ticket and the transfer. Reports about a replaced transfer are
dropped. (The whole of it against the simulator: tests/pipeline/test_ticket_gone.py.)"""
from __future__ import annotations

import time

import pytest

from olvm_backup.engine import EngineError
from olvm_backup.engine.cbt import TransferInfo
from olvm_backup.engine.vms import DiskInfo
from olvm_backup.retry import TRANSFER_REOPEN
from schemas import TransferGone
from services.snapshotter.chain import DiskPlan
from services.snapshotter.plan import OpenDisk
from services.snapshotter.reopen import Reopener, TicketLost, ticket_of


def open_disk(disk_id: str) -> OpenDisk:
    info = DiskInfo(disk_id, disk_id, 1 << 30, "cow", "virtio_scsi", False, True, True, "sd", True)
    return OpenDisk(DiskPlan(info, False, "first", None),
                    TransferInfo(f"t-{disk_id}", disk_id, f"https://host/images/{disk_id}", None), [], 8)


def gone(transfer: TransferInfo) -> TransferGone:
    return TransferGone(backup_id="b1", task_id=f"b1/{transfer.disk_id}/0", disk_id=transfer.disk_id,
                        transfer_url=transfer.transfer_url, error="imageio: OPTIONS answered 403: No such ticket",
                        reader="reader@h:1", at=time.time())


class Engine:
    """What the job does for the reopener: end the old transfer and open another, send the tasks again."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.fail, self.calls, self.told = fail, [], []

    async def reopen(self, disk_id: str, old: TransferInfo) -> TransferInfo:
        self.calls.append(("reopen", old.transfer_id))
        if self.fail:
            raise self.fail
        n = sum(c[0] == "reopen" for c in self.calls)
        return TransferInfo(f"t-{disk_id}-{n}", disk_id, f"https://host/images/{disk_id}-{n}", None)

    async def resend(self, disk_id: str, transfer: TransferInfo) -> int:
        self.calls.append(("resend", transfer.transfer_id))
        return 2

    async def tell(self, text: str) -> None:
        self.told.append(text)


def reopener(engine: Engine, *disks) -> Reopener:
    return Reopener(list(disks), reopen=engine.reopen, resend=engine.resend, tell=engine.tell)


async def test_a_gone_transfer_is_replaced_once_however_many_tasks_report_it():
    root, data = open_disk("root"), open_disk("data")
    engine = Engine()
    r = reopener(engine, root, data)
    first = r.transfer("root")
    await r.on_lost([gone(first), gone(first)])
    assert engine.calls == [("reopen", "t-root"), ("resend", "t-root-1")]
    assert r.transfer("root").transfer_id == "t-root-1" and r.transfer("data") == data.transfer
    assert engine.told == ["disk root: imageio ticket root of transfer t-root is gone; opened transfer t-root-1 and "
                           "sent its 2 unfinished read task(s) again"]
    # A task read through the replaced transfer reports late: its task was sent again already.
    await r.on_lost([gone(first)])
    assert len(engine.calls) == 2


async def test_a_disk_that_keeps_losing_its_ticket_fails_the_backup_naming_disk_and_ticket():
    engine = Engine()
    r = reopener(engine, open_disk("root"))
    for _ in range(TRANSFER_REOPEN.attempts - 1):
        await r.on_lost([gone(r.transfer("root"))])
    last = r.transfer("root")
    with pytest.raises(TicketLost) as failed:
        await r.on_lost([gone(last)])
    assert str(failed.value).startswith(f"disk root: imageio ticket {ticket_of(last.transfer_url)} of transfer "
                                        f"{last.transfer_id} is gone, and {TRANSFER_REOPEN.attempts} of its transfers")
    assert "No such ticket" in str(failed.value)
    assert sum(c[0] == "reopen" for c in engine.calls) == TRANSFER_REOPEN.attempts - 1


async def test_a_transfer_that_cannot_be_reopened_fails_the_backup_naming_disk_and_ticket():
    engine = Engine(fail=EngineError("transfer went to finished_failure"))
    root = open_disk("root")
    with pytest.raises(TicketLost) as failed:
        await reopener(engine, root).on_lost([gone(root.transfer)])
    assert str(failed.value).startswith("disk root: imageio ticket root of transfer t-root is gone, and no other "
                                        "transfer could be opened: ")
    assert "finished_failure" in str(failed.value) and not failed.value.retriable


def test_the_ticket_is_the_last_part_of_the_transfer_url():
    assert ticket_of("https://host:54322/images/5e1c0a") == "5e1c0a"
