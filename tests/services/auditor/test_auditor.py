"""The auditor on the in-memory twins: it keeps requests, steps and policy changes (not progress) in one object per
batch, commits offsets only once the object is written, keeps a batch the store refused and writes it on the next
poll, writes what it read when stopped, and a record read twice (the broker restarted empty) reads back once."""
from __future__ import annotations

import asyncio

from olvm_backup.audit.reading import read_trail
from olvm_backup.audit.trail import decode_batch
from olvm_backup.errors import StoreError
from olvm_backup.objectstore.memory import MemoryStore
from schemas import BackupEvent, BackupRequest, PolicyEvent, RestoreEvent
from schemas.topics import BACKUP_EVENTS, BACKUP_REQUESTS, POLICY_EVENTS, RESTORE_EVENTS
from services.auditor import auditor as auditor_module
from services.auditor.auditor import Auditor
from tests.twins import PREFIX, ListLoop, MemoryBus, run_until_drained

T = 1_714_500_000.0
AUDITED = (BACKUP_REQUESTS, BACKUP_EVENTS, RESTORE_EVENTS, POLICY_EVENTS)


def _feed(loop: ListLoop, at: float = T) -> None:
    loop.feed(PREFIX + "backup.requests", BackupRequest(request_id="r1", vm="app1", requested_at=at))
    for i, kind in enumerate(("accepted", "progress", "started", "task_stored", "completed")):
        loop.feed(PREFIX + "backup.events", BackupEvent(request_id="r1", backup_id="b1", vm="app1", kind=kind,
                                                        at=at + i), partition=1)
    loop.feed(PREFIX + "restore.events", RestoreEvent(request_id="r2", restore_point="b1", kind="progress", at=at))
    loop.feed(PREFIX + "policy.events", PolicyEvent(policy="gold", action="created", actor="alice", at=at))


def _auditor(store, loop) -> Auditor:
    return Auditor(store, loop, PREFIX, "auditor@test:1")


async def _kinds(store) -> list[str]:
    return [e.record.get("kind", e.type) for e in await read_trail(store)]


async def test_steps_and_changes_are_kept_in_one_object_and_then_committed():
    store, loop = MemoryStore(), ListLoop(MemoryBus(), AUDITED, max_batch=100)
    _feed(loop)
    auditor = _auditor(store, loop)
    await run_until_drained(loop, auditor.handle, commit_each=False, after_batch=auditor.after_batch)
    [key] = auditor.written
    assert key.startswith("audit/") and [e.topic for e in decode_batch(await store.get(key), key)] == [
        "backup.requests", "backup.events", "backup.events", "backup.events", "policy.events"]
    assert await _kinds(store) == ["BackupRequest", "accepted", "started", "completed", "PolicyEvent"]
    # Every record read is committed, those not kept too (progress, task_stored): nothing is read again.
    assert {(tp.topic, tp.partition): off for tp, off in loop.committed.items()} == {
        (PREFIX + "backup.requests", 0): 1, (PREFIX + "backup.events", 1): 5, (PREFIX + "restore.events", 0): 1,
        (PREFIX + "policy.events", 0): 1}


async def test_nothing_is_committed_before_its_object_is_written_and_a_refused_batch_is_kept():
    refusals = 2

    async def away(op, key, part):
        nonlocal refusals
        if op == "put_object" and key.startswith("audit/") and refusals:
            refusals -= 1
            raise StoreError("the store is away")

    store, loop = MemoryStore(before=away), ListLoop(MemoryBus(), AUDITED, max_batch=100, idle_polls=2)
    _feed(loop)
    auditor = _auditor(store, loop)
    await run_until_drained(loop, auditor.handle, commit_each=False, after_batch=auditor.after_batch)
    assert refusals == 0 and loop.commits == [] and auditor.written == []  # two quiet polls, two refusals
    loop.idle_polls = 4  # the store answers again: on the next quiet poll the kept batch is written, then committed
    await run_until_drained(loop, auditor.handle, commit_each=False, after_batch=auditor.after_batch)
    assert len(auditor.written) == 1 and len(loop.commits) == 1
    assert await _kinds(store) == ["BackupRequest", "accepted", "started", "completed", "PolicyEvent"]


async def test_a_batch_waits_for_a_quiet_poll_a_full_batch_or_its_age(monkeypatch):
    monkeypatch.setattr(auditor_module, "MAX_ENTRIES", 3)
    store, loop = MemoryStore(), ListLoop(MemoryBus(), AUDITED, max_batch=3)
    _feed(loop)
    auditor = _auditor(store, loop)
    await run_until_drained(loop, auditor.handle, commit_each=False, after_batch=auditor.after_batch)
    # Polls of 3: the first keeps 2 (request, accepted; not progress), the second 2 more (started, completed): 4,
    # at least MAX_ENTRIES, written; the third keeps the policy change, written when the feed runs dry.
    assert [len(decode_batch(await store.get(k), k)) for k in auditor.written] == [4, 1]

    now = [T]
    aged = Auditor(MemoryStore(), ListLoop(MemoryBus(), AUDITED), PREFIX, "a", clock=lambda: now[0])
    await aged.handle(BackupRequest(request_id="r", vm="v", requested_at=T),
                      _where(PREFIX + "backup.requests"))
    await aged.after_batch(False)
    assert aged.written == []
    now[0] += auditor_module.FLUSH_EVERY
    await aged.after_batch(False)
    assert len(aged.written) == 1


def _where(topic: str):
    from olvm_backup.kafka.consumer import Message
    return Message(topic, 0, 0, None, 0)


async def test_stopping_writes_what_was_read():
    store, loop = MemoryStore(), ListLoop(MemoryBus(), AUDITED, idle_polls=10**9)
    auditor = _auditor(store, loop)

    async def no_quiet_poll(empty: bool) -> None:  # as if records kept coming: nothing is written until the stop
        pass

    auditor.after_batch = no_quiet_poll
    task = asyncio.create_task(auditor.run())
    loop.feed(PREFIX + "backup.requests", BackupRequest(request_id="r1", vm="app1", requested_at=T))
    for _ in range(100):  # the loop's polls until the record is read
        await asyncio.sleep(0)
    assert auditor._pending and auditor.written == [] and loop.commits == []
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert len(auditor.written) == 1 and len(loop.commits) == 1
    assert [e.record["request_id"] for e in await read_trail(store)] == ["r1"]


async def test_records_read_again_after_the_broker_restarted_empty_read_back_once():
    """The broker lost its topics; a snapshotter's recovery published the same events again, at offsets from 0."""
    store = MemoryStore()
    for _ in range(2):
        loop = ListLoop(MemoryBus(), AUDITED, max_batch=100)
        _feed(loop)
        auditor = _auditor(store, loop)
        await run_until_drained(loop, auditor.handle, commit_each=False, after_batch=auditor.after_batch)
    assert len([info async for info in store.list("audit/")]) == 2
    assert await _kinds(store) == ["BackupRequest", "accepted", "started", "completed", "PolicyEvent"]
