"""S3 through aioboto3: any S3 (AWS, MinIO, Ceph RGW, OCI), the embedded `rclone serve s3`, moto in tests.

Object bodies (puts, parts, gets) go through botocore's blocking client in a
thread pool; control calls stay on aioboto3. In the event loop's thread, a
body costs seconds per GiB: aiohttp receives it in small pieces joined by
Python, and botocore hashes what it sends (SHA-256 to sign the payload). In
a worker thread the hashing and the socket I/O run in C with the GIL
released, so writers and restores use both cores.

Payloads are signed only where that guards something: over plain HTTP to
another host. Over TLS the record MACs already do, and on loopback there is
no wire; every chunk's digest is checked again when it is read back anyway.

With OLVM_OBJECT_LOCK_DAYS on, a restore point's objects are written with an Object Lock retention (locking.py
says which and until when), carrying the Content-MD5 S3 demands of such writes; the bucket must have Object Lock
(checked at start). A delete looks at the object's lock first: a versioned bucket (every Object Lock bucket is)
would answer a DELETE of a locked object with a delete marker, a success that deletes nothing.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ipaddress
import logging
import time
import urllib.parse
from datetime import timezone
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator

import aioboto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .. import metrics
from ..config import S3Settings
from ..errors import BackupError, ConfigError, ObjectLocked, ObjectNotFound, StoreError, StoreGaveUp, StoreRefused
from ..retry import OBJECT_STORE, retry
from .base import MIN_PART_SIZE, ObjectInfo, PartCutter, Upload
from .locking import Retention, retention_for, utcnow

log = logging.getLogger(__name__)

_NOT_FOUND = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}


def _translate(error: Exception, key: str) -> Exception:
    """botocore's errors to ours: missing is final, 4xx is final (StoreRefused), everything else may pass."""
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _NOT_FOUND or status == 404:
            return ObjectNotFound(key)
        if 400 <= status < 500 and status not in (408, 429):
            return StoreRefused(f"{key}: refused: {code} (HTTP {status})")
        return StoreError(f"{key}: {code} (HTTP {status})")
    return StoreError(f"{key}: {error}")


def _counted(error: Exception, method: str) -> Exception:
    """`error`, counted in olvm_object_store_errors unless it is a not-found answer (a lookup's ordinary no)."""
    if not isinstance(error, ObjectNotFound):
        metrics.STORE_ERRORS.labels(method, type(error).__name__).inc()
    return error


class _S3Multipart(PartCutter):
    """Buffers writes into parts of `part_size` and uploads each as it fills, up to PARTS_IN_FLIGHT at once, so
    the caller goes on producing while parts travel; memory stays bounded by that many parts plus the buffer.

    The multipart upload is created when the first part fills: an object completed before that goes up with one
    PUT, as S3 clients do below their multipart threshold (one request instead of three, and nothing for the
    store to assemble on completion).

    A part that fails (after the client's retries) breaks the upload for good: every later write and the
    completion raise that failure, so an object with a part missing is never completed, whatever the caller does.
    """

    PARTS_IN_FLIGHT = 2
    ABORT_PATIENCE = 10.0  # seconds an abort waits for parts in flight

    def __init__(self, store: "S3Store", key: str, part_size: int) -> None:
        super().__init__(key, part_size)
        self._store = store
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._in_flight: set[asyncio.Task] = set()
        self._lock: Retention | None = None

    async def _start_part(self, data: bytes) -> None:
        if self._upload_id is None:
            self._lock = retention_for(self.key, self._store._settings, utcnow())
            response = await self._store._call("create_multipart_upload", self.key, Bucket=self._store.bucket,
                                               Key=self.key, **_lock_args(self._lock))
            self._upload_id = response["UploadId"]
        while len(self._in_flight) >= self.PARTS_IN_FLIGHT:
            await self._wait_one()
        self._numbers += 1
        self._in_flight.add(asyncio.ensure_future(self._upload(self._numbers, data)))

    def _begun(self) -> bool:
        return self._upload_id is not None

    async def _put_whole(self, data: bytes) -> None:
        await self._store.put(self.key, data)

    async def _wait_one(self) -> None:
        done, _ = await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            self._in_flight.discard(task)
            if not task.cancelled() and task.exception() is not None:
                self._broken = task.exception()
                raise self._broken  # a failed part fails the pack (the caller aborts the upload)

    async def _upload(self, number: int, data: bytes) -> None:
        md5 = {"ContentMD5": await self._store._md5(data)} if self._lock else {}
        response = await self._store._call_blocking(
            "upload_part", self.key, Bucket=self._store.bucket, Key=self.key, UploadId=self._upload_id,
            PartNumber=number, Body=data, **md5,
        )
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})

    async def complete(self) -> None:
        if await self._last_part():
            return
        while self._in_flight:
            await self._wait_one()
        self._check_parts([p["PartNumber"] for p in self._parts])
        response = await self._store._call(
            "complete_multipart_upload", self.key, Bucket=self._store.bucket, Key=self.key,
            UploadId=self._upload_id, MultipartUpload={"Parts": sorted(self._parts, key=lambda p: p["PartNumber"])},
        )
        if self._lock is not None:
            await self._store._make_sure_locked(self.key, response.get("VersionId"), self._lock)

    async def abort(self) -> None:
        # A part being sent runs in a worker thread, which cancelling does not stop: give it a moment to end, so
        # that it does not land after the abort (a part for an aborted upload is a leftover on some stores).
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=self.ABORT_PATIENCE)
        for task in self._in_flight:
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        self._in_flight.clear()
        self._buffer.clear()
        if self._upload_id is None:
            return  # nothing was sent
        with contextlib.suppress(BackupError):
            await self._store._call("abort_multipart_upload", self.key, Bucket=self._store.bucket, Key=self.key,
                                    UploadId=self._upload_id)


def _lock_args(lock: Retention | None) -> dict[str, Any]:
    return {} if lock is None else {"ObjectLockMode": lock.mode, "ObjectLockRetainUntilDate": lock.until}


def _content_md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def _retention(response: dict[str, Any]) -> Retention | None:
    """The lock a HEAD answered (S3 shows it to credentials with s3:GetObjectRetention)."""
    until = response.get("ObjectLockRetainUntilDate")
    if until is None:
        return None
    return Retention(str(response.get("ObjectLockMode") or "GOVERNANCE"), until.astimezone(timezone.utc))


class S3Store:
    """One client per process; every call retried with backoff when the failure may pass."""

    BODY_THREADS = 8

    def __init__(self, settings: S3Settings, client: Any, blocking_client: Any) -> None:
        self.bucket = settings.bucket
        self._settings = settings
        self._client = client
        self._blocking = blocking_client
        self._threads = ThreadPoolExecutor(self.BODY_THREADS, thread_name_prefix="s3-body")

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        self._blocking.close()

    async def _call(self, method: str, key: str, **kwargs: Any) -> Any:
        async def once() -> Any:
            started = time.monotonic()
            try:
                return await getattr(self._client, method)(**kwargs)
            except (ClientError, BotoCoreError, OSError) as e:
                raise _counted(_translate(e, key), method) from e
            finally:
                metrics.STORE_SECONDS.labels(method).observe(time.monotonic() - started)

        return await retry(once, what=f"S3 {method} {key}", policy=OBJECT_STORE, gave_up=StoreGaveUp)

    async def _call_blocking(self, method: str, key: str, *, expect: int | None = None, **kwargs: Any) -> Any:
        """A call carrying a body, on the blocking client in a worker thread (see the module's docstring).
        `expect`: the body's length, checked here so that a short read is retried like any fault that passes."""
        def once() -> Any:
            started = time.monotonic()
            try:
                response = getattr(self._blocking, method)(**kwargs)
                if "Body" in response:  # a get: read it here too
                    body = response["Body"]
                    try:
                        data = body.read()
                    finally:
                        body.close()
                    if expect is not None and len(data) != expect:
                        raise _counted(StoreError(f"{key}: asked {expect} bytes ({kwargs['Range']}), got "
                                                  f"{len(data)}"), method)
                    return data
                return response
            except (ClientError, BotoCoreError, OSError) as e:
                raise _counted(_translate(e, key), method) from e
            finally:
                metrics.STORE_SECONDS.labels(method).observe(time.monotonic() - started)

        loop = asyncio.get_running_loop()
        return await retry(lambda: loop.run_in_executor(self._threads, once), what=f"S3 {method} {key}",
                           policy=OBJECT_STORE, gave_up=StoreGaveUp)

    async def ensure_bucket(self) -> None:
        try:
            await self._call("head_bucket", self.bucket, Bucket=self.bucket)
        except ObjectNotFound:
            if not self._settings.create_bucket:
                raise BackupError(f"bucket {self.bucket} does not exist (and OLVM_S3_CREATE_BUCKET is off)") from None
            log.info("creating bucket %s", self.bucket)
            # Object Lock is turned on when a bucket is created, never later.
            lock = {"ObjectLockEnabledForBucket": True} if self._settings.object_lock_days > 0 else {}
            await self._call("create_bucket", self.bucket, Bucket=self.bucket, **lock)
        if self._settings.object_lock_days > 0:
            await self._check_object_lock()

    async def _check_object_lock(self) -> None:
        """Locking on and a bucket without Object Lock is refused at start: the writes would fail (or, on a store
        that ignores the lock, succeed unlocked), and the backups would not be what the setting promises."""
        try:  # once: a store that does not implement it answers the same every time
            response = await self._client.get_object_lock_configuration(Bucket=self.bucket)
            state = response.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") or "not enabled"
        except ClientError as e:
            state = str(e.response.get("Error", {}).get("Code", "") or e)
        except (BotoCoreError, OSError) as e:
            raise _translate(e, self.bucket) from e
        if state != "Enabled":
            raise ConfigError(
                f"OLVM_OBJECT_LOCK_DAYS is {self._settings.object_lock_days} but bucket {self.bucket} has no S3 "
                f"Object Lock ({state}). S3 turns Object Lock on only when a bucket is created: use a bucket "
                "created with it (or let OLVM_S3_CREATE_BUCKET create one), or set OLVM_OBJECT_LOCK_DAYS=0. The "
                "embedded store has no Object Lock.")

    async def _md5(self, data: bytes) -> str:
        """Content-MD5 of a locked write (S3 refuses one without an integrity checksum), in a worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, _content_md5, data)

    async def _make_sure_locked(self, key: str, version_id: str | None, lock: Retention) -> None:
        """A multipart object's lock is given when its upload is created; a store that drops it there (moto
        does) gets it again on the completed version."""
        version = {"VersionId": version_id} if version_id else {}
        response = await self._call("head_object", key, Bucket=self.bucket, Key=key, **version)
        if _retention(response) is None:
            await self._call("put_object_retention", key, Bucket=self.bucket, Key=key, **version,
                             Retention={"Mode": lock.mode, "RetainUntilDate": lock.until})

    async def ping(self) -> None:
        await self._call("head_bucket", self.bucket, Bucket=self.bucket)

    async def put(self, key: str, data: bytes) -> None:
        lock = retention_for(key, self._settings, utcnow())
        md5 = {"ContentMD5": await self._md5(data)} if lock else {}
        await self._call_blocking("put_object", key, Bucket=self.bucket, Key=key, Body=data, **_lock_args(lock),
                                  **md5)

    async def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            kwargs["Range"] = f"bytes={offset}-{end}"

        return await self._call_blocking("get_object", key, expect=length, **kwargs)

    async def head(self, key: str) -> ObjectInfo | None:
        try:
            response = await self._call("head_object", key, Bucket=self.bucket, Key=key)
        except ObjectNotFound:
            return None
        return ObjectInfo(key, int(response["ContentLength"]), _retention(response))

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = await self._call("list_objects_v2", prefix, **kwargs)
            for item in page.get("Contents", []):
                yield ObjectInfo(item["Key"], int(item["Size"]))
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")

    async def delete(self, key: str) -> None:
        """ObjectLocked while the object's retention holds. Otherwise a plain DELETE: on a versioned bucket that
        hides the object behind a delete marker and keeps its data as a noncurrent version (a lifecycle rule
        expiring noncurrent versions reclaims it); deleting the version itself would bring an older one back
        (a journal rewritten every few seconds has many)."""
        info = await self.head(key)
        if info is None:
            return  # gone already (or behind a delete marker): nothing to delete
        if info.lock is not None and info.lock.holds(utcnow()):
            raise ObjectLocked(key, info.lock.describe(utcnow()))
        await self._call("delete_object", key, Bucket=self.bucket, Key=key)

    async def erase(self, key: str) -> None:
        """Every version of the object and its delete markers, not only the current one: for what must not outlive
        its deletion in a versioned bucket (an Object Lock bucket always is), such as a removed key slot, which an
        older version would otherwise keep opening. A locked version refuses (ObjectLocked), as in `delete`."""
        await self.delete(key)
        markers: dict[str, str] = {}
        while True:
            page = await self._call("list_object_versions", key, Bucket=self.bucket, Prefix=key, **markers)
            for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
                if item["Key"] == key:
                    await self._call("delete_object", key, Bucket=self.bucket, Key=key, VersionId=item["VersionId"])
            if not page.get("IsTruncated"):
                return
            markers = {"KeyMarker": page.get("NextKeyMarker", ""),
                       "VersionIdMarker": page.get("NextVersionIdMarker", "")}

    async def multipart(self, key: str, part_size: int = MIN_PART_SIZE) -> _S3Multipart:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part size {part_size} is below S3's minimum {MIN_PART_SIZE}")
        return _S3Multipart(self, key, part_size)

    async def uploads(self, prefix: str = "") -> AsyncIterator[Upload]:
        markers: dict[str, str] = {}
        while True:
            page = await self._call("list_multipart_uploads", prefix, Bucket=self.bucket, Prefix=prefix, **markers)
            for item in page.get("Uploads", []):
                yield Upload(item["Key"], item["UploadId"], item["Initiated"].timestamp())
            if not page.get("IsTruncated"):
                return
            markers = {"KeyMarker": page.get("NextKeyMarker", ""), "UploadIdMarker": page.get("NextUploadIdMarker", "")}

    async def abort_upload(self, upload: Upload) -> None:
        try:
            await self._call("abort_multipart_upload", upload.key, Bucket=self.bucket, Key=upload.key,
                             UploadId=upload.upload_id)
        except ObjectNotFound:
            pass  # completed or aborted meanwhile (NoSuchUpload): gone either way


def sign_payload(endpoint_url: str) -> bool:
    """Whether uploads carry a SHA-256 of their body (SigV4 payload signing): only over plain HTTP to another host
    (AWS's default endpoint is HTTPS)."""
    url = urllib.parse.urlsplit(endpoint_url or "https://s3.amazonaws.com")
    if url.scheme != "http":
        return False
    host = url.hostname or ""
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host != "localhost"


@contextlib.asynccontextmanager
async def open_store(settings: S3Settings, *, ensure_bucket: bool = True) -> AsyncIterator[S3Store]:
    config = Config(
        retries={"max_attempts": 1},  # we retry ourselves, with our deadline
        connect_timeout=10, read_timeout=60, max_pool_connections=32,
        s3={"addressing_style": "path", "payload_signing_enabled": sign_payload(settings.endpoint_url)},
        # botocore >= 1.36 adds CRC32 checksums to every upload by default, which several S3-compatible stores
        # reject or ignore; integrity is covered by TLS or the signed payload (see above), and by our digests.
        request_checksum_calculation="when_required", response_checksum_validation="when_required",
    )
    client_args = dict(endpoint_url=settings.endpoint_url or None, aws_access_key_id=settings.access_key.reveal(),
                       aws_secret_access_key=settings.secret_key.reveal(), region_name=settings.region,
                       config=config)
    async with aioboto3.Session().client("s3", **client_args) as client:
        store = S3Store(settings, client, botocore.session.get_session().create_client("s3", **client_args))
        try:
            if ensure_bucket:
                await store.ensure_bucket()
            yield store
        finally:
            store.close()
