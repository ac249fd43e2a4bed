"""One conformance suite for every object store we run against: the in-memory store (fast tests), moto (tests) and
`rclone serve s3` (the embedded default); and what only the embedded store does: keys kept out of argv, objects
kept as plain files."""
from __future__ import annotations

import asyncio
import dataclasses
import os
import uuid
from pathlib import Path

import pytest

from olvm_backup.errors import BackupError, ObjectNotFound, ProcessStartError, StoreError
from olvm_backup.objectstore import open_store
from olvm_backup.objectstore.memory import MemoryStore
from olvm_backup.objectstore.s3 import sign_payload
from olvm_backup.repository.uploads import AbandonedUploads
from olvm_backup.secret import Secret
from olvm_backup.stack import components
from olvm_backup.stack.processes import free_port
from olvm_backup.stack.s3rver_layout import adopt_s3rver_objects

MIB = 1024 * 1024


EMBEDDED_KEYS = {"access_key": Secret("olvm-embedded"), "secret_key": Secret("embedded-secret/+=")}


@pytest.fixture(scope="module")
def embedded_store(tmp_path_factory):
    port = free_port()
    root = tmp_path_factory.mktemp("embedded-store")
    with components.object_store("127.0.0.1", port, root / "objects", root / "object-store.log",
                                 **EMBEDDED_KEYS) as process:
        yield f"http://127.0.0.1:{port}", process, root / "objects"


@pytest.fixture(params=["memory", pytest.param("moto", marks=pytest.mark.processes),
                        pytest.param("embedded", marks=pytest.mark.processes)])
async def store(request):
    if request.param == "memory":
        yield MemoryStore()
        return
    settings = request.getfixturevalue("s3_settings")  # asked here, so the memory store needs no moto
    if request.param == "embedded":
        endpoint, _, _ = request.getfixturevalue("embedded_store")
        settings = dataclasses.replace(settings, endpoint_url=endpoint, **EMBEDDED_KEYS)
    async with open_store(settings) as opened:
        yield opened


def lose_part(store, number: int) -> None:
    """Fault injection in our own client (the store behind it is real): part `number` fails after the retries."""
    if isinstance(store, MemoryStore):
        async def before(op, key, part):
            if op == "upload_part" and part == number:
                raise StoreError(f"{key}: part {number} lost")

        store.before = before
        return
    send = store._call_blocking

    async def part_lost(method, key, **kwargs):
        if method == "upload_part" and kwargs["PartNumber"] == number:
            raise StoreError(f"{key}: part {number} lost")
        return await send(method, key, **kwargs)

    store._call_blocking = part_lost


async def test_multipart_object_reads_back_byte_identical_by_ranges(store):
    parts = [os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(3 * MIB + 17)]
    whole = b"".join(parts)
    upload = await store.multipart("packs/p1", part_size=5 * MIB)
    async with upload:
        for offset in range(0, len(whole), 1_000_003):  # writes that straddle part boundaries
            await upload.write(whole[offset:offset + 1_000_003])
            assert await store.head("packs/p1") is None  # nothing visible before the completion
    assert (await store.head("packs/p1")).size == len(whole)
    for offset, length in [(0, 10), (5 * MIB - 5, 10), (10 * MIB - 1, 2), (len(whole) - 7, 7), (123, 4 * MIB)]:
        assert await store.get("packs/p1", offset, length) == whole[offset:offset + length]
    assert await store.get("packs/p1") == whole
    assert await store.get("packs/p1", len(whole) - 3) == whole[-3:]


async def test_a_range_past_the_end_is_an_error(store):
    await store.put("packs/short", b"0123456789")
    with pytest.raises(BackupError):
        await store.get("packs/short", 5, 10)


async def test_part_sizes_below_s3s_minimum_are_refused(store):
    with pytest.raises(ValueError):
        await store.multipart("packs/tiny", part_size=MIB)


async def test_object_smaller_than_a_part_goes_up_whole(store):
    """A pack sealed before its first part fills is sent with one PUT (no multipart upload is opened)."""
    data = os.urandom(3 * MIB + 5)
    async with await store.multipart("packs/small", part_size=5 * MIB) as upload:
        await upload.write(data[:MIB])
        await upload.write(data[MIB:])
    assert await store.get("packs/small") == data
    assert upload.size == len(data)


@pytest.mark.parametrize("written", [6 * MIB, MIB], ids=["parts-sent", "nothing-sent"])
async def test_failed_multipart_leaves_no_object(store, written):
    with pytest.raises(RuntimeError):
        async with await store.multipart("packs/broken") as upload:
            await upload.write(os.urandom(written))
            raise RuntimeError("writer crashed")
    assert await store.head("packs/broken") is None


async def test_a_lost_part_breaks_the_upload_for_good(store):
    """A part lost after the client's retries: a caller that goes on writing (a handler retried by the consumer
    loop did) must never get the object completed with that part missing."""
    lose_part(store, 2)
    upload = await store.multipart("packs/gap", part_size=5 * MIB)
    failures = []
    for _ in range(5):
        try:
            await upload.write(os.urandom(5 * MIB))
        except BackupError as e:
            failures.append(str(e))
    assert "part 2 lost" in failures[0] and all("lost a part" in f for f in failures[1:]), failures
    with pytest.raises(BackupError, match="lost a part"):
        await upload.complete()
    await upload.abort()
    assert await store.head("packs/gap") is None


async def test_put_list_delete_and_missing(store):
    keys = [f"catalog/vm{i}/{uuid.uuid4().hex}" for i in range(3)]
    for key in keys:
        await store.put(key, key.encode())
    await store.put("catalogue", b"not under catalog/")
    listed = [info async for info in store.list("catalog/")]
    assert sorted(i.key for i in listed) == sorted(keys)
    assert all(i.size == len(i.key) for i in listed)
    await store.delete(keys[0])
    with pytest.raises(ObjectNotFound):
        await store.get(keys[0])
    assert await store.head(keys[0]) is None
    await store.delete(keys[0])  # deleting what is gone is not an error (a retried delete)


async def test_listing_goes_on_past_a_page(store, monkeypatch):
    if isinstance(store, MemoryStore):
        monkeypatch.setattr(store, "PAGE", 7)
    keys = sorted(f"index/{n:04d}" for n in range(1003 if not isinstance(store, MemoryStore) else 23))
    await asyncio.gather(*(store.put(key, b"x") for key in keys))
    assert [i.key async for i in store.list("index/")] == keys


def test_payloads_are_signed_only_over_plain_http_to_another_host():
    assert sign_payload("http://minio.backup.lan:9000") and sign_payload("http://10.0.0.7:9000")
    for no_wire_or_tls in ("http://127.0.0.1:19000", "http://localhost:9000", "http://[::1]:9000",
                           "https://minio.backup.lan", ""):
        assert not sign_payload(no_wire_or_tls), no_wire_or_tls


async def test_embedded_store_keeps_objects_as_plain_files_and_its_keys_out_of_argv(embedded_store, s3_settings):
    endpoint, process, objects = embedded_store
    settings = dataclasses.replace(s3_settings, endpoint_url=endpoint, **EMBEDDED_KEYS)
    data = os.urandom(MIB + 3)
    async with open_store(settings) as store:
        await store.put("manifests/vm1/b1", data)
    assert (objects / settings.bucket / "manifests" / "vm1" / "b1").read_bytes() == data
    argv = Path(f"/proc/{process.pid}/cmdline").read_bytes()
    assert b"embedded-secret" not in argv and b"olvm-embedded" not in argv


def test_the_embedded_store_refuses_keys_it_would_answer_with_403(tmp_path):
    for access, secret in [("ab", "secret"), ("olvm", ""), ("ol,vm", "secret"), ("olvm", 'se"cret')]:
        with pytest.raises(ProcessStartError, match="access key"):
            components.object_store("127.0.0.1", free_port(), tmp_path, tmp_path / "log",
                                    access_key=Secret(access), secret_key=Secret(secret))


async def test_objects_an_earlier_s3rver_store_left_are_served_after_adoption(tmp_path, s3_settings):
    """An installation upgraded in place keeps its backups: s3rver's files become plain objects."""
    objects = tmp_path / "objects"
    packs = objects / s3_settings.bucket / "packs"
    packs.mkdir(parents=True)
    old, kept = os.urandom(2 * MIB), b"written by the current store"
    (packs / "p1._S3rver_object").write_bytes(old)
    (packs / "p1._S3rver_object.md5").write_text("x")
    (packs / "p1._S3rver_metadata.json").write_text("{}")
    (packs / "p2").write_bytes(kept)  # both layouts hold p2: the plain file is the newer
    (packs / "p2._S3rver_object").write_bytes(b"stale")
    (objects / s3_settings.bucket / "._S3rver_uploads" / "u1").mkdir(parents=True)

    assert adopt_s3rver_objects(objects) == 1
    assert adopt_s3rver_objects(objects) == 0
    port = free_port()
    with components.object_store("127.0.0.1", port, objects, tmp_path / "object-store.log", **EMBEDDED_KEYS):
        settings = dataclasses.replace(s3_settings, endpoint_url=f"http://127.0.0.1:{port}", **EMBEDDED_KEYS)
        async with open_store(settings) as store:
            assert sorted([i.key async for i in store.list("")]) == ["packs/p1", "packs/p2"]
            assert await store.get("packs/p1") == old
            assert await store.get("packs/p2") == kept


async def test_only_abandoned_uploads_are_aborted(store):
    """A killed writer's upload is aborted once old enough; a live upload and completed objects are left alone."""
    janitor = AbandonedUploads(store, older_than=1.5, seen_for=1.5)
    done = os.urandom(11 * MIB)
    async with await store.multipart("packs/aa/done", part_size=5 * MIB) as upload:
        await upload.write(done)
    abandoned = await store.multipart("packs/aa/abandoned", part_size=5 * MIB)
    await abandoned.write(os.urandom(6 * MIB))  # its first part is sent: the store holds an upload
    assert await janitor.sweep() == []  # first seen
    await asyncio.sleep(2.5)  # (S3 gives an upload's start to the second)
    live = await store.multipart("packs/aa/live", part_size=5 * MIB)
    live_data = os.urandom(7 * MIB)
    await live.write(live_data[:6 * MIB])
    assert sorted([u.key async for u in store.uploads("packs/")]) == ["packs/aa/abandoned", "packs/aa/live"]

    assert [u.key for u in await janitor.sweep()] == ["packs/aa/abandoned"]
    assert [u.key async for u in store.uploads("packs/")] == ["packs/aa/live"]
    await live.write(live_data[6 * MIB:])
    await live.complete()
    assert await store.get("packs/aa/live") == live_data and await store.get("packs/aa/done") == done
    with pytest.raises(BackupError):  # the writer that owned it, were it alive after all, cannot complete it
        await abandoned.complete()
    await abandoned.abort()
    assert await store.head("packs/aa/abandoned") is None
    assert [u async for u in store.uploads("packs/")] == []


async def test_the_embedded_store_keeps_a_dropped_upload_in_a_file_until_it_is_aborted(embedded_store, s3_settings):
    endpoint, _, objects = embedded_store
    settings = dataclasses.replace(s3_settings, endpoint_url=endpoint, **EMBEDDED_KEYS)
    async with open_store(settings) as store:
        dropped = await store.multipart("packs/ab/dropped", part_size=5 * MIB)
        await dropped.write(os.urandom(11 * MIB))  # two parts, then the writer is gone
        await asyncio.sleep(1)
        [left] = components.multipart_leftovers(objects)
        assert left.stat().st_size >= 5 * MIB and left.parent == objects / settings.bucket / "packs" / "ab"
        janitor = AbandonedUploads(store, older_than=0, seen_for=0)
        assert [u.key for u in await janitor.sweep()] == ["packs/ab/dropped"]
        assert components.multipart_leftovers(objects) == []
        await dropped.abort()  # (only to end the client's part in flight)
