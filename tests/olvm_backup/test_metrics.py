"""Metrics (olvm_backup/metrics): the exposition server a service starts and stops, and what the layers count —
retries, engine calls, imageio failures, object store failures, consumer lag — read back from the registry."""
from __future__ import annotations

import asyncio
import logging
import socket
import urllib.request

import ovirtsdk4 as sdk
import pytest

from olvm_backup import metrics
from olvm_backup.config import EngineSettings, MetricsSettings, load_settings
from olvm_backup.engine import Engine, EngineGaveUp
from olvm_backup.errors import ConfigError, ObjectNotFound, StoreError
from olvm_backup.imageio import ImageioGaveUp, Transfer
from olvm_backup.metrics import REGISTRY, serving
from olvm_backup.metrics.lag import LagSampler, lag_of
from olvm_backup.objectstore.s3 import _counted
from olvm_backup.retry import RetryPolicy
from olvm_backup.stack.embedded import METRICS_BLOCKS, SERVICES, metrics_port
from olvm_backup.stack.processes import free_port, port_open
from aiokafka import TopicPartition

FAST = RetryPolicy("metrics test", attempts=3, deadline=60.0, base_delay=0.001, max_delay=0.001)


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scrape(address: str) -> str:
    with urllib.request.urlopen(address, timeout=5) as answer:
        assert answer.status == 200
        return answer.read().decode()


def test_a_service_serves_its_metrics_until_closed():
    port = free_port()
    server = serving.serve(MetricsSettings(port=port, lag_interval=2.0), "unit-test")
    assert server is not None and serving.lag_interval == 2.0
    try:
        metrics.job_ended("backup", "completed", 3.5)
        text = scrape(f"http://127.0.0.1:{port}/metrics")
    finally:
        server.close()
    assert 'olvm_service_info{service="unit-test"} 1.0' in text
    assert 'olvm_jobs_total{kind="backup",outcome="completed"}' in text
    assert 'olvm_job_duration_seconds_count{kind="backup",outcome="completed"}' in text
    assert "process_resident_memory_bytes" in text
    assert serving.lag_interval is None  # consumers stop sampling with the server
    assert not port_open("127.0.0.1", port)  # nothing is left listening


def test_no_port_serves_nothing_and_a_taken_port_is_told_not_fatal(caplog):
    assert serving.serve(MetricsSettings(port=0), "unit-test") is None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.ERROR):
            assert serving.serve(MetricsSettings(port=port), "unit-test") is None
    assert f"127.0.0.1:{port}" in caplog.text and "OLVM_METRICS_PORT" in caplog.text
    assert serving.lag_interval is None


def test_metrics_settings_are_checked():
    settings = load_settings(environ={"OLVM_METRICS_PORT": "9100", "OLVM_METRICS_HOST": "0.0.0.0"})
    assert (settings.metrics.port, settings.metrics.host) == (9100, "0.0.0.0")
    with pytest.raises(ConfigError, match="OLVM_METRICS_PORT"):
        load_settings(environ={"OLVM_METRICS_PORT": "70000"})


def test_up_gives_every_service_its_own_port():
    assert set(SERVICES) <= set(METRICS_BLOCKS), "a service `up` starts has no metrics port"
    ports = [metrics_port(19100, name, i) for name in METRICS_BLOCKS for i in (1, 2, 20)]
    ports = [p for p in ports if p]
    assert len(ports) == len(set(ports)), "two services of `up` would share a metrics port"
    assert metrics_port(19100, "snapshotter", 1) == 19100
    assert metrics_port(19100, "reader", 2) == 19111
    assert metrics_port(0, "reader", 1) == 0  # OLVM_METRICS_BASE_PORT=0: none
    assert metrics_port(19100, "writer", 21) == 0  # past the block: none rather than a neighbour's


async def test_retries_and_engine_calls_are_counted_by_policy_and_error():
    retries = value("olvm_retries_total", policy=FAST.name)
    exhausted = value("olvm_retries_exhausted_total", policy=FAST.name)
    errors = value("olvm_engine_errors_total", error="EngineUnavailable")
    calls = value("olvm_engine_request_duration_seconds_count", policy=FAST.name)

    def busy():
        raise sdk.Error("Cannot lock the disk: it is locked", code=409)

    engine = Engine(EngineSettings())
    try:
        assert await engine.call(lambda: 42, policy=FAST) == 42
        with pytest.raises(EngineGaveUp):
            await engine.call(busy, policy=FAST)
    finally:
        await engine.close()
    assert value("olvm_engine_request_duration_seconds_count", policy=FAST.name) == calls + 1 + FAST.attempts
    assert value("olvm_engine_errors_total", error="EngineUnavailable") == errors + FAST.attempts
    assert value("olvm_retries_total", policy=FAST.name) == retries + FAST.attempts - 1
    assert value("olvm_retries_exhausted_total", policy=FAST.name) == exhausted + 1


async def test_imageio_failures_are_counted(monkeypatch):
    monkeypatch.setattr("olvm_backup.imageio.IMAGEIO", FAST)
    before = value("olvm_imageio_errors_total", error="ImageioUnavailable")
    port = free_port()  # nothing listens there
    with pytest.raises(ImageioGaveUp):
        async with Transfer(f"https://127.0.0.1:{port}/images/t", None, ca_file="", insecure=True):
            pass
    assert value("olvm_imageio_errors_total", error="ImageioUnavailable") == before + FAST.attempts


def test_object_store_failures_are_counted_but_not_found_is_no_failure():
    failed = value("olvm_object_store_errors_total", method="get_object", error="StoreError")
    missing = value("olvm_object_store_errors_total", method="get_object", error="ObjectNotFound")
    _counted(StoreError("packs/x: InternalError (HTTP 500)"), "get_object")
    _counted(ObjectNotFound("catalog/y"), "get_object")
    assert value("olvm_object_store_errors_total", method="get_object", error="StoreError") == failed + 1
    assert value("olvm_object_store_errors_total", method="get_object", error="ObjectNotFound") == missing == 0


def test_lag_is_end_minus_committed_and_never_negative():
    a, b, c = (TopicPartition("t", p) for p in range(3))
    assert lag_of({a: 10, b: 5, c: 7}, {a: 4, b: None, c: 9}) == {a: 6, b: 5, c: 0}


class FakeConsumer:
    """What LagSampler asks of an aiokafka consumer: its assignment, end offsets and committed offsets."""

    def __init__(self, end: dict[TopicPartition, int], committed: dict[TopicPartition, int]) -> None:
        self.end, self.commits = end, committed

    def assignment(self) -> set[TopicPartition]:
        return set(self.end)

    async def end_offsets(self, partitions):
        return {tp: self.end[tp] for tp in partitions}

    async def committed(self, tp):
        return self.commits.get(tp)


async def test_lag_is_sampled_while_served_and_a_lost_partition_loses_its_series(monkeypatch):
    wave, requests = TopicPartition("p.chunks.w1", 0), TopicPartition("p.backup.requests", 1)
    consumer = FakeConsumer({wave: 12, requests: 3}, {wave: 2})
    monkeypatch.setattr(serving, "lag_interval", 0.01)
    sampler = LagSampler(consumer, "lag-test")
    sampler.start()
    try:
        for _ in range(200):
            if value("olvm_consumer_lag", group="lag-test", topic=wave.topic, partition="0") == 10:
                break
            await asyncio.sleep(0.01)
        assert value("olvm_consumer_lag", group="lag-test", topic=wave.topic, partition="0") == 10
        assert value("olvm_consumer_lag", group="lag-test", topic=requests.topic, partition="1") == 3
        del consumer.end[wave]  # the wave's topic deleted: no longer assigned
        for _ in range(200):
            if REGISTRY.get_sample_value("olvm_consumer_lag", {"group": "lag-test", "topic": wave.topic,
                                                                "partition": "0"}) is None:
                break
            await asyncio.sleep(0.01)
        assert REGISTRY.get_sample_value("olvm_consumer_lag", {"group": "lag-test", "topic": wave.topic,
                                                                "partition": "0"}) is None
    finally:
        await sampler.stop()
    assert REGISTRY.get_sample_value("olvm_consumer_lag", {"group": "lag-test", "topic": requests.topic,
                                                            "partition": "1"}) is None


def test_no_lag_is_sampled_while_no_server_runs(monkeypatch):
    monkeypatch.setattr(serving, "lag_interval", None)
    sampler = LagSampler(FakeConsumer({}, {}), "lag-off")
    sampler.start()
    assert sampler._task is None
