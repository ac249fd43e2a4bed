"""Every service's Prometheus metrics after real backups (issue 24): each service of the pipeline, started with
its own OLVM_METRICS_PORT, answers /metrics over HTTP, and what it counts agrees with what the backups' own events
say. Two fulls of one small VM: the first stores its chunks, the second finds them all in the repository."""
from __future__ import annotations

import asyncio
import time
import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from olvm_backup.kafka import Bus
from olvm_backup.stack.processes import free_port, port_open
from schemas import BackupRequest
from schemas.topics import BACKUP_REQUESTS

from .conftest import Pipeline, module_sim, one_small_vm, pipeline_settings, prepare_topics, init_repository

VM = "metered1"
SERVICES = ("snapshotter", "reader", "writer", "restorer", "auditor", "scheduler")


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    yield from module_sim(tmp_path_factory, one_small_vm(VM, status="up"))


@pytest.fixture(scope="module")
def metered(broker, moto_endpoint, sim, tmp_path_factory):
    """The six services, each serving its metrics on a port of its own; consumer lag sampled every second."""
    logs = tmp_path_factory.mktemp("metered")
    settings = pipeline_settings(broker, moto_endpoint, sim, logs / "data")
    prepare_topics(settings)
    init_repository(settings)
    p = Pipeline(settings, logs)
    ports = {name: free_port() for name in SERVICES}
    try:
        for name in SERVICES:
            p.start(name, name, OLVM_METRICS_PORT=str(ports[name]), OLVM_METRICS_LAG_INTERVAL="1")
        deadline = time.monotonic() + 60
        while not all(port_open("127.0.0.1", port) for port in ports.values()):
            assert time.monotonic() < deadline, "a service does not serve its metrics: see its log in " + str(logs)
            time.sleep(0.2)
        yield p, ports
    finally:
        p.stop_all()


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    """One service's /metrics: (sample name, its labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples: dict, name: str, **labels: str) -> float:
    """The sum of `name` over the series that carry `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def series(samples: dict, name: str) -> list[dict[str, str]]:
    return [dict(ls) for (n, ls) in samples if n == name]


def publish(settings, requests: list[BackupRequest]) -> None:
    async def send() -> None:
        async with Bus(settings.kafka, client_id="test-metrics") as bus:
            for request in requests:
                await bus.publish(BACKUP_REQUESTS, request, key=request.vm)
    asyncio.run(send())


def test_each_service_counts_what_the_backups_did(metered):
    pipeline, ports = metered
    started = time.monotonic()
    # Two fulls at once: one VM's requests share a partition, so the second waits behind the first, uncommitted.
    requests = [BackupRequest(request_id=str(uuid.uuid4()), vm=VM, mode="full", requested_by="test: metrics",
                              requested_at=time.time()) for _ in range(2)]
    publish(pipeline.settings, requests)
    most_lag, outcomes = 0.0, []
    deadline = time.monotonic() + 240
    while len(outcomes) < 2 and time.monotonic() < deadline:
        most_lag = max(most_lag, total(scrape(ports["snapshotter"]), "olvm_consumer_lag", group="snapshotter"))
        events = pipeline.backup_events()
        ended = [e for r in requests for e in events.get(r.request_id, []) if e.kind in ("completed", "failed")]
        outcomes = [e.outcome for e in ended if e.kind == "completed"]
        assert len(ended) == len(outcomes), [e.message for e in ended]
        time.sleep(0.3)
    took = time.monotonic() - started
    assert len(outcomes) == 2
    assert most_lag >= 1, "the request waiting behind a running backup never showed as consumer lag"
    first, second = outcomes if outcomes[0].bytes_stored else outcomes[::-1]

    m = {name: scrape(port) for name, port in ports.items()}
    for name in SERVICES:  # each answers as itself
        assert total(m[name], "olvm_service_info", service=name) == 1, name

    reader = m["reader"]
    assert total(reader, "olvm_reader_read_bytes_total") == first.bytes_read + second.bytes_read > 0
    new = total(reader, "olvm_reader_chunks_total", result="new")
    assert new > 0
    # The second full read the same data: every chunk of it was in the repository already.
    assert total(reader, "olvm_reader_chunks_total", result="deduplicated") == new
    assert total(reader, "olvm_reader_deduplicated_bytes_total") == second.bytes_read
    assert second.bytes_stored == 0

    writer = m["writer"]
    assert total(writer, "olvm_writer_chunks_stored_total") == new  # stored once, by the first backup
    assert total(writer, "olvm_writer_stored_bytes_total") == first.bytes_stored > 0
    # Every byte read was zeros (never stored), in a chunk the repository held, or stored: once each.
    assert total(writer, "olvm_writer_stored_raw_bytes_total") + total(reader, "olvm_reader_zero_bytes_total") + \
        total(reader, "olvm_reader_deduplicated_bytes_total") == total(reader, "olvm_reader_read_bytes_total")
    assert total(writer, "olvm_writer_packs_stored_total") >= 1
    assert total(writer, "olvm_writer_chunks_deduplicated_total") == 0  # nothing was redelivered
    assert total(writer, "olvm_object_store_request_duration_seconds_count") > 0

    snapshotter = m["snapshotter"]
    assert total(snapshotter, "olvm_jobs_total", kind="backup", outcome="completed") == 2
    assert total(snapshotter, "olvm_jobs_total", kind="backup", outcome="failed") == 0
    assert total(snapshotter, "olvm_job_duration_seconds_count", kind="backup", outcome="completed") == 2
    assert 0 < total(snapshotter, "olvm_job_duration_seconds_sum", kind="backup", outcome="completed") < took
    assert total(snapshotter, "olvm_job_duration_seconds_sum", kind="backup", outcome="completed") >= \
        first.duration + second.duration - 0.01  # the job's own count of its time, and a little more
    # The engine's answers, timed in the one place they are asked for.
    assert total(snapshotter, "olvm_engine_request_duration_seconds_count", policy="engine") > 0
    assert total(snapshotter, "olvm_engine_request_duration_seconds_sum") > 0
    assert total(reader, "olvm_imageio_bytes_total", direction="read") == first.bytes_read + second.bytes_read

    # Consumer lag: each consuming service shows its group's partitions, all caught up once the backups ended.
    groups = {"snapshotter": ("snapshotter", ".backup.requests"), "reader": ("readers", ".read.tasks"),
              "restorer": ("restorer", ".restore.requests"), "auditor": ("auditor", "")}
    deadline = time.monotonic() + 30
    while True:
        lags = {name: [(s, total(m[name], "olvm_consumer_lag", **s)) for s in series(m[name], "olvm_consumer_lag")]
                for name in groups}
        caught_up = all(lag and all(v == 0 for _, v in lag) for lag in lags.values())
        if caught_up or time.monotonic() > deadline:
            break
        time.sleep(1.0)
        m = {name: scrape(ports[name]) for name in groups}
    for name, (group, topic) in groups.items():
        assert lags[name], f"{name} shows no consumer lag"
        assert all(s["group"] == group and topic in s["topic"] for s, _ in lags[name]), lags[name]
        assert caught_up, lags
