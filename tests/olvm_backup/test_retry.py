"""Retry in one place: the helper's budget, the error tree it branches on, the consumer loop above the adapters,
and no budget written anywhere but retry.py."""
from __future__ import annotations

import ast
import asyncio
import dataclasses
import io
from pathlib import Path
from types import SimpleNamespace

import ovirtsdk4 as sdk
import pytest

from olvm_backup import retry as retry_module
from olvm_backup.config import EngineSettings
from olvm_backup.engine import Engine, EngineError, EngineGaveUp, EngineNotFound, EngineUnavailable, cbt
from olvm_backup.engine.connection import translate
from olvm_backup.errors import (BackupError, GaveUp, ObjectNotFound, RetriableError, StoreError, StoreGaveUp,
                                StoreRefused)
from olvm_backup.kafka.consumer import RecordLoop
from olvm_backup.retry import ENGINE_LOOKUP, HANDLER, OBJECT_STORE, RetryPolicy, retry
from schemas import BackupRequest, encode
from schemas.topics import BACKUP_REQUESTS, DEAD_LETTERS

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("olvm_backup", "services")
FAST = RetryPolicy("test", attempts=4, deadline=60.0, base_delay=0.001, max_delay=0.001)


@pytest.fixture(autouse=True)
def no_waits(monkeypatch):
    """The loop's policy without its backoff: what is counted is attempts, not seconds."""
    monkeypatch.setattr("olvm_backup.kafka.consumer.HANDLER", dataclasses.replace(HANDLER, base_delay=0.001,
                                                                                 max_delay=0.001))


class Failing:
    def __init__(self, error: BaseException, *, until: int | None = None) -> None:
        self.error, self.until, self.calls = error, until, 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.until is None or self.calls < self.until:
            raise self.error
        return "done"


# -- retry() ----------------------------------------------------------------------------------------------------------

async def test_a_spent_budget_is_exactly_the_policys_attempts_then_gave_up():
    op = Failing(StoreError("packs/p: InternalError (HTTP 500)"))
    with pytest.raises(StoreGaveUp) as raised:
        await retry(op, what="S3 put_object packs/p", policy=FAST, gave_up=StoreGaveUp)
    assert op.calls == FAST.attempts
    e = raised.value
    assert not e.retriable and e.last is e.__cause__ and isinstance(e.last, StoreError)
    assert isinstance(e, StoreError) and isinstance(e, GaveUp)  # both the family's catch and GaveUp's see it
    assert str(e).startswith("S3 put_object packs/p: gave up after 4 attempt(s) in ")
    assert str(e).endswith(": object store: packs/p: InternalError (HTTP 500)")


async def test_success_within_the_budget_is_returned():
    op = Failing(RetriableError("busy"), until=FAST.attempts)
    assert await retry(op, what="x", policy=FAST) == "done"
    assert op.calls == FAST.attempts


async def test_the_deadline_ends_the_budget_before_the_attempts():
    op = Failing(RetriableError("busy"))
    with pytest.raises(GaveUp):
        await retry(op, what="x", policy=RetryPolicy("short", attempts=100, deadline=0.0))
    assert op.calls == 1


@pytest.mark.parametrize("error", [BackupError("final"), StoreRefused("k: refused: AccessDenied (HTTP 403)"),
                                   ObjectNotFound("k"), EngineNotFound("no VM"), ValueError("bug"),
                                   EngineGaveUp("x", what="inner", attempts=6, seconds=1.0)])
async def test_a_final_error_is_raised_at_once_as_it_is(error):
    op = Failing(error)
    with pytest.raises(type(error)) as raised:
        await retry(op, what="x", policy=FAST)
    assert raised.value is error and op.calls == 1


async def test_cancellation_propagates_at_once():
    op = Failing(asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        await retry(op, what="x", policy=FAST)
    assert op.calls == 1


# -- one tree ---------------------------------------------------------------------------------------------------------

def test_an_engine_outage_is_an_engine_error_and_so_is_its_spent_budget():
    outage = translate(sdk.Error("HTTP 503 Service Unavailable", code=503))
    assert isinstance(outage, EngineUnavailable) and isinstance(outage, EngineError) and outage.retriable
    locked = translate(sdk.Error("Cannot backup VM: disk is locked", code=400))
    assert isinstance(locked, EngineUnavailable) and locked.retriable
    final = translate(sdk.Error("Cannot add VM: bad name", code=400))
    assert type(final) is EngineError and not final.retriable
    assert issubclass(EngineGaveUp, EngineError) and not EngineGaveUp.retriable
    assert all(issubclass(c, BackupError) for c in (EngineError, StoreError, GaveUp))


# -- the consumer loop ------------------------------------------------------------------------------------------------

class Letters:
    def __init__(self) -> None:
        self.sent = []

    async def publish(self, topic, record, key=None) -> None:
        assert topic is DEAD_LETTERS
        self.sent.append(record)


class OneRecordLoop(RecordLoop):
    """The loop's shared part over one record in memory: only `_process` and the dead letters are exercised."""

    def __init__(self) -> None:
        self.letters = Letters()
        super().__init__(self.letters, "test-group", max_batch=1)

    def _topic_of(self, name: str):
        return BACKUP_REQUESTS

    async def handle_one(self, handler) -> None:
        value = encode(BackupRequest(request_id="r1", vm="vm1", requested_at=0.0))
        msg = SimpleNamespace(topic="t.backup.requests", partition=0, offset=7, key=b"vm1", timestamp=0, value=value)
        await self._process(msg, handler)


def counting(error: BaseException):
    calls = []

    async def handler(record, where) -> None:
        calls.append(record.request_id)
        raise error

    return handler, calls


async def test_an_adapters_gave_up_is_dead_lettered_without_another_try():
    gave_up = StoreGaveUp("object store: packs/p: InternalError (HTTP 500)", what="S3 upload_part packs/p",
                          attempts=5, seconds=3.2)
    handler, calls = counting(gave_up)
    loop = OneRecordLoop()
    await loop.handle_one(handler)
    assert calls == ["r1"]
    [letter] = loop.letters.sent
    assert letter.error_type == "StoreGaveUp" and letter.offset == 7
    assert "InternalError (HTTP 500)" in letter.reason and "gave up after 5 attempt(s)" in letter.reason


async def test_a_retriable_error_no_adapter_owns_is_tried_the_handler_budget():
    handler, calls = counting(RetriableError("the chunk topic is not there yet"))
    loop = OneRecordLoop()
    await loop.handle_one(handler)
    assert len(calls) == HANDLER.attempts
    [letter] = loop.letters.sent
    assert letter.error_type == "GaveUp" and "the chunk topic is not there yet" in letter.reason


async def test_a_failure_among_a_handlers_parallel_work_is_judged_by_itself():
    """A handler fanning out in a TaskGroup (the reader) fails with a group: the loop judges and tells what failed."""
    calls = []

    async def handler(record, where) -> None:
        calls.append(1)
        async with asyncio.TaskGroup() as group:
            group.create_task(asyncio.sleep(10))
            group.create_task(Failing(EngineGaveUp("engine: down", what="read", attempts=6, seconds=9.0))())

    loop = OneRecordLoop()
    await loop.handle_one(handler)
    assert calls == [1]
    [letter] = loop.letters.sent
    assert letter.error_type == "EngineGaveUp" and letter.reason.startswith("read: gave up after 6 attempt(s)")


async def test_a_record_handled_after_a_passing_fault_is_not_dead_lettered():
    calls = []

    async def handler(record, where) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RetriableError("not yet")

    loop = OneRecordLoop()
    await loop.handle_one(handler)
    assert len(calls) == 2 and loop.letters.sent == []


# -- no budget outside retry.py ---------------------------------------------------------------------------------------

BUDGET_WORDS = {"attempts", "deadline", "max_attempts", "retries", "tries"}


def literal_budgets(tree: ast.AST) -> list[tuple[int, str]]:
    """Calls that write a retry budget by hand: a number passed as attempts/deadline, or a RetryPolicy built."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name == "RetryPolicy":
            found.append((node.lineno, "RetryPolicy(...)"))
        for kw in node.keywords:
            number = isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, (int, float))
            if kw.arg in BUDGET_WORDS and number:
                found.append((node.lineno, f"{name}({kw.arg}={kw.value.value})"))
    return found


def test_the_check_finds_a_literal_budget():
    code = "await retry(op, what='x', attempts=3)\nawait engine.call(fn, deadline=60)\nRetryPolicy('p', 1, 2)\n"
    assert len(literal_budgets(ast.parse(code))) == 3
    assert literal_budgets(ast.parse("await retry(op, what='x', policy=ENGINE)")) == []


def test_no_retry_budget_is_written_outside_retry_py():
    offenders = []
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == Path(retry_module.__file__).resolve():
                continue
            offenders += [f"{path.relative_to(ROOT)}:{line}: {what}"
                          for line, what in literal_budgets(ast.parse(path.read_text(), str(path)))]
    assert offenders == [], "retry budgets belong in olvm_backup/retry.py as named policies:\n" + "\n".join(offenders)


# -- the adapters' side: their own budget, their family's GaveUp, and the catch sites above them ----------------------

class FlakyS3:
    """botocore's blocking client, answering every get with `answer` (an exception or a short body)."""

    def __init__(self, answer) -> None:
        self.answer, self.calls = answer, 0

    def get_object(self, **kwargs):
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return {"Body": io.BytesIO(self.answer)}

    def close(self) -> None:
        pass


def client_error(code: str, status: int):
    from botocore.exceptions import ClientError
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")


@pytest.mark.parametrize("answer, raised, calls", [
    ("500", StoreGaveUp, OBJECT_STORE.attempts),
    (b"short", StoreGaveUp, OBJECT_STORE.attempts),  # a short read is retried in the adapter, not above it
    ("403", StoreRefused, 1),
    ("404", ObjectNotFound, 1),
], ids=["5xx", "short-read", "4xx", "missing"])
async def test_the_object_store_owns_its_retries(monkeypatch, answer, raised, calls):
    from olvm_backup.config import S3Settings
    from olvm_backup.objectstore.s3 import S3Store
    monkeypatch.setattr("olvm_backup.objectstore.s3.OBJECT_STORE", dataclasses.replace(
        OBJECT_STORE, base_delay=0.001, max_delay=0.001))
    if isinstance(answer, str):
        answer = client_error({"500": "InternalError", "403": "AccessDenied", "404": "NoSuchKey"}[answer],
                              int(answer))
    blocking = FlakyS3(answer)
    store = S3Store(S3Settings(bucket="b"), client=None, blocking_client=blocking)
    try:
        with pytest.raises(raised) as e:
            await store.get("packs/p", 0, 10)
    finally:
        store.close()
    assert blocking.calls == calls and not e.value.retriable and isinstance(e.value, StoreError)
    if answer == b"short":
        assert "packs/p: asked 10 bytes (bytes=0-9), got 5" in str(e.value)
    elif calls > 1:
        assert str(e.value).endswith("object store: packs/p: InternalError (HTTP 500)"), str(e.value)


class EngineAway(Engine):
    """An engine whose every request answers 503."""

    def __init__(self) -> None:
        super().__init__(EngineSettings())
        self.calls = 0

    @property
    def system(self):
        def fail(*_, **__):
            self.calls += 1
            raise sdk.Error("HTTP 503 Service Unavailable", code=503)
        return SimpleNamespace(events_service=lambda: SimpleNamespace(list=fail),
                               vms_service=lambda: SimpleNamespace(vm_service=fail))


async def test_an_engine_away_only_blanks_the_freeze_outcome(monkeypatch):
    """freeze_outcome only informs: an engine that stays away (its budget spent) is logged, not raised."""
    monkeypatch.setattr("olvm_backup.engine.cbt.ENGINE_LOOKUP", dataclasses.replace(
        ENGINE_LOOKUP, base_delay=0.001, max_delay=0.001))
    async with EngineAway() as engine:
        assert await cbt.freeze_outcome(engine, "backup-1") is None
        assert engine.calls == ENGINE_LOOKUP.attempts
        with pytest.raises(EngineError) as e:  # an outage is an EngineError, before and after its budget
            await engine.call(lambda: engine.system.vms_service().vm_service("vm"), what="look up VM vm",
                              policy=dataclasses.replace(ENGINE_LOOKUP, base_delay=0.001, max_delay=0.001))
        assert isinstance(e.value, EngineGaveUp) and isinstance(e.value.last, EngineUnavailable)
        assert str(e.value).startswith("look up VM vm: gave up after 2 attempt(s)")
        assert str(e.value).endswith("engine: HTTP 503 Service Unavailable")
