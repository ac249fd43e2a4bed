"""Real processes for the tests: the Tansu broker and moto's S3 server, started once per session; and the fast
tier, computed: every test that starts no process."""
from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import uuid
from pathlib import Path
from unittest import mock

import pytest

from olvm_backup.config import KafkaSettings, S3Settings, Settings
from olvm_backup.secret import Secret
from olvm_backup.stack import components
from olvm_backup.stack.processes import free_port


@pytest.fixture(scope="session")
def process_logs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def broker(process_logs) -> str:
    port = free_port()
    with components.broker("127.0.0.1", port, process_logs / "broker.log"):
        yield f"127.0.0.1:{port}"


@pytest.fixture(scope="session")
def moto_endpoint(process_logs) -> str:
    port = free_port()
    with components.moto("127.0.0.1", port, process_logs / "moto.log"):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def kafka_settings(broker) -> KafkaSettings:
    # A topic prefix per test keeps tests apart on the one broker.
    return KafkaSettings(bootstrap_servers=broker, topic_prefix=f"t{uuid.uuid4().hex[:8]}.", partitions=2)


@pytest.fixture
def s3_settings(moto_endpoint) -> S3Settings:
    return S3Settings(endpoint_url=moto_endpoint, bucket=f"b-{uuid.uuid4().hex[:12]}",
                      access_key=Secret("testing"), secret_key=Secret("testing"))


@pytest.fixture
def settings(tmp_path, kafka_settings, s3_settings) -> Settings:
    return dataclasses.replace(Settings(), data_dir=tmp_path / "data", kafka=kafka_settings, s3=s3_settings)


def plain_repository(settings: Settings) -> None:
    """The bucket made a repository without encryption (`olvm-backup init --no-encryption`), unless it is one
    already, as a service needs it before it starts: for tests that hand the services plain chunks of their own."""
    import asyncio
    import concurrent.futures

    from olvm_backup.objectstore import open_store
    from olvm_backup.repository.keyring import init_repository, read_config

    async def init() -> None:
        async with open_store(settings.s3) as store:
            if await read_config(store) is None:
                await init_repository(store, settings.repository, encrypt=False)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # its own loop: callable from a test's running one
        pool.submit(asyncio.run, init()).result()


# ---------------------------------------------------------------------------------------------------------------------
# The fast tier (`pytest -m fast`, `scripts/test.sh --fast`): every test that needs no process. A test needs one when
# it uses a fixture that starts one (any of PROCESS_FIXTURES, however deep) or is marked `processes` (tests that
# start their own, fixtures that ask for a process fixture by name). Nothing is listed by hand as fast, and a test
# classed fast that starts a process anyway (an unlisted fixture, a forgotten mark) fails, so the tier cannot drift.
# ---------------------------------------------------------------------------------------------------------------------

PROCESS_FIXTURES = {"broker", "moto_endpoint", "embedded_store", "sim", "small_disk"}


@pytest.hookimpl(tryfirst=True)  # before `-m` selects on the marks
def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if item.get_closest_marker("processes") is None and \
                PROCESS_FIXTURES.isdisjoint(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.fast)
        else:
            item.add_marker(pytest.mark.processes)


def _no_processes(item):
    if item.get_closest_marker("fast") is None:
        return contextlib.nullcontext()

    def refuse(args, *_, **__):
        raise RuntimeError(f"{item.nodeid} is in the fast tier but starts {args!r}: mark it `processes`, or add "
                           "the fixture that starts it to PROCESS_FIXTURES (tests/conftest.py)")

    return mock.patch.object(subprocess, "Popen", refuse)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    with _no_processes(item):  # fixtures too: a process fixture missing from PROCESS_FIXTURES is caught here
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    with _no_processes(item):
        return (yield)


@pytest.fixture
def small_disk(tmp_path):
    """A 12 MiB file system (a tmpfs: root only) for the embedded store's objects."""
    disk = tmp_path / "objects"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs: {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)
