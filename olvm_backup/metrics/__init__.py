"""Prometheus metrics: one registry per process, every metric the product exposes declared here, once.

Each is counted in the one layer its dependency is reached through (the engine connection, the imageio
transfer, the S3 store, the retry layer, the consumer loop) or where a job ends, never at call sites; the
README's Metrics table lists them. Labels take bounded values only (a retry policy's name, an S3 method, an
error's class), never an id or a key. Counting costs a lock and an add, so the metrics are kept whether or not
a server exposes them (serving.py starts one on OLVM_METRICS_PORT).
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client import ProcessCollector

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # memory, CPU, open files: process_* (Linux)

# Request latencies: milliseconds (loopback, a cached answer) to a minute (a slow engine, a 64 MiB part).
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Jobs: a snapshot in seconds to a big VM's backup in hours.
JOB_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0)


def _counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
    return Counter(name, doc, labels, registry=REGISTRY)


SERVICE = Info("olvm_service", "the service this process runs", registry=REGISTRY)

# The reader: what backups read and what the repository held already.
READ_BYTES = _counter("olvm_reader_read_bytes", "disk bytes read through imageio for backups")
ZERO_BYTES = _counter("olvm_reader_zero_bytes", "bytes read that were all zeros (never stored)")
READ_CHUNKS = _counter("olvm_reader_chunks", "chunks read with data: new (sent to the writers) or deduplicated "
                       "(the repository or the task held them already)", ("result",))
DEDUPLICATED_BYTES = _counter("olvm_reader_deduplicated_bytes", "disk bytes of the chunks deduplicated")

# The writer: what packs made durable.
PACKS_STORED = _counter("olvm_writer_packs_stored", "packs sealed (upload completed, index written)")
CHUNKS_STORED = _counter("olvm_writer_chunks_stored", "chunks in the packs sealed")
STORED_BYTES = _counter("olvm_writer_stored_bytes", "bytes of the chunks sealed, as stored (compressed, sealed)")
STORED_RAW_BYTES = _counter("olvm_writer_stored_raw_bytes", "disk bytes the chunks sealed hold")
WRITER_DUPLICATE_CHUNKS = _counter("olvm_writer_chunks_deduplicated",
                                   "chunks dropped because the open pack held them already (redelivered)")
WRITER_DUPLICATE_BYTES = _counter("olvm_writer_deduplicated_bytes", "bytes, as stored, of those chunks")

# Jobs: backups (snapshotter), restores (restorer), hypervisor-snapshot runs and slots (scheduler).
JOBS = _counter("olvm_jobs", "jobs ended, by kind and outcome", ("kind", "outcome"))
JOB_SECONDS = Histogram("olvm_job_duration_seconds", "how long jobs ran, by kind and outcome", ("kind", "outcome"),
                        buckets=JOB_BUCKETS, registry=REGISTRY)
SLOTS = _counter("olvm_scheduler_slots", "schedule slots the active scheduler fired or skipped (past their window)",
                 ("kind", "outcome"))

# Dependencies, each in its one adapter.
ENGINE_SECONDS = Histogram("olvm_engine_request_duration_seconds", "engine API calls (each attempt), by retry policy",
                           ("policy",), buckets=REQUEST_BUCKETS, registry=REGISTRY)
ENGINE_ERRORS = _counter("olvm_engine_errors", "engine API calls that failed (each attempt), by error", ("error",))
IMAGEIO_BYTES = _counter("olvm_imageio_bytes", "bytes moved through imageio", ("direction",))
IMAGEIO_ERRORS = _counter("olvm_imageio_errors", "imageio requests that failed (each attempt), by error", ("error",))
STORE_SECONDS = Histogram("olvm_object_store_request_duration_seconds", "object store requests (each attempt)",
                          ("method",), buckets=REQUEST_BUCKETS, registry=REGISTRY)
STORE_ERRORS = _counter("olvm_object_store_errors",
                        "object store requests that failed (each attempt; not-found answers are not errors)",
                        ("method", "error"))
RETRIES = _counter("olvm_retries", "attempts retried after a failure that may pass, by retry policy", ("policy",))
GAVE_UP = _counter("olvm_retries_exhausted", "requests given up once their retry budget was spent", ("policy",))
CONSUMER_LAG = Gauge("olvm_consumer_lag", "records of a partition not yet committed by the consumer group (end "
                     "offset minus committed offset), sampled every OLVM_METRICS_LAG_INTERVAL seconds",
                     ("group", "topic", "partition"), registry=REGISTRY)

# The REST API and console (services/api): by route template, never by the path a caller typed.
API_REQUESTS = _counter("olvm_api_requests", "API and console requests answered, by method, route and status",
                        ("method", "route", "status"))
API_SECONDS = Histogram("olvm_api_request_duration_seconds", "how long the API took to answer (a progress stream: "
                        "how long it was followed), by route", ("route",), buckets=REQUEST_BUCKETS, registry=REGISTRY)


def job_ended(kind: str, outcome: str, seconds: float) -> None:
    JOBS.labels(kind, outcome).inc()
    JOB_SECONDS.labels(kind, outcome).observe(seconds)
