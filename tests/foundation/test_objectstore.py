"""One conformance suite for every object store we run against: moto (tests) and s3rver (embedded default)."""
from __future__ import annotations

import dataclasses
import os
import uuid

import pytest

from olvm_backup.config import S3Settings
from olvm_backup.errors import ObjectNotFound
from olvm_backup.objectstore import open_store
from olvm_backup.objectstore.s3 import sign_payload
from olvm_backup.secret import Secret
from olvm_backup.stack import components
from olvm_backup.stack.processes import free_port

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def s3rver_endpoint(tmp_path_factory):
    port = free_port()
    root = tmp_path_factory.mktemp("s3rver")
    with components.object_store("127.0.0.1", port, root / "objects", root / "s3rver.log"):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(params=["moto", "s3rver"])
def store_settings(request, s3_settings) -> S3Settings:
    if request.param == "moto":
        return s3_settings
    endpoint = request.getfixturevalue("s3rver_endpoint")
    return dataclasses.replace(s3_settings, endpoint_url=endpoint, access_key=Secret("S3RVER"),
                               secret_key=Secret("S3RVER"))


async def test_multipart_object_reads_back_byte_identical_by_ranges(store_settings):
    parts = [os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(3 * MIB + 17)]
    whole = b"".join(parts)
    async with open_store(store_settings) as store:
        upload = await store.multipart("packs/p1", part_size=5 * MIB)
        async with upload:
            for offset in range(0, len(whole), 1_000_003):  # writes that straddle part boundaries
                await upload.write(whole[offset:offset + 1_000_003])
        assert await store.head("packs/p1") == len(whole)
        for offset, length in [(0, 10), (5 * MIB - 5, 10), (10 * MIB - 1, 2), (len(whole) - 7, 7), (123, 4 * MIB)]:
            assert await store.get("packs/p1", offset, length) == whole[offset:offset + length]
        assert await store.get("packs/p1") == whole


async def test_object_smaller_than_a_part_goes_up_whole(store_settings):
    """A pack sealed before its first part fills is sent with one PUT (no multipart upload is opened)."""
    data = os.urandom(3 * MIB + 5)
    async with open_store(store_settings) as store:
        async with await store.multipart("packs/small", part_size=5 * MIB) as upload:
            await upload.write(data[:MIB])
            await upload.write(data[MIB:])
        assert await store.get("packs/small") == data
        assert upload.size == len(data)


@pytest.mark.parametrize("written", [6 * MIB, MIB], ids=["parts-sent", "nothing-sent"])
async def test_failed_multipart_leaves_no_object(store_settings, written):
    async with open_store(store_settings) as store:
        with pytest.raises(RuntimeError):
            async with await store.multipart("packs/broken") as upload:
                await upload.write(os.urandom(written))
                raise RuntimeError("writer crashed")
        assert await store.head("packs/broken") is None


async def test_put_list_delete_and_missing(store_settings):
    async with open_store(store_settings) as store:
        keys = [f"catalog/vm{i}/{uuid.uuid4().hex}" for i in range(3)]
        for key in keys:
            await store.put(key, key.encode())
        listed = [info async for info in store.list("catalog/")]
        assert sorted(i.key for i in listed) == sorted(keys)
        assert all(i.size == len(i.key) for i in listed)
        await store.delete(keys[0])
        with pytest.raises(ObjectNotFound):
            await store.get(keys[0])
        assert await store.head(keys[0]) is None


def test_payloads_are_signed_only_over_plain_http_to_another_host():
    assert sign_payload("http://minio.backup.lan:9000") and sign_payload("http://10.0.0.7:9000")
    for no_wire_or_tls in ("http://127.0.0.1:19000", "http://localhost:9000", "http://[::1]:9000",
                           "https://minio.backup.lan", ""):
        assert not sign_payload(no_wire_or_tls), no_wire_or_tls
