"""The exposition server: each service's metrics over HTTP at /metrics, on the port its settings give it.

prometheus-client's own server, on a thread of its own: a scrape is answered even while the event loop is busy
with a chunk or blocked on a slow call, which is when an admin wants to look. Started and stopped with the
service (runtime.py); a port that cannot be had is logged and the service runs on without metrics, since
monitoring must never stop backups.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

from ..config import MetricsSettings
from . import REGISTRY, SERVICE

log = logging.getLogger(__name__)

# How often consumers sample their lag (lag.py): set by `serve`, None while no server exposes it.
lag_interval: float | None = None


@dataclass
class MetricsServer:
    server: WSGIServer
    thread: threading.Thread

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/metrics"

    def close(self) -> None:
        global lag_interval
        lag_interval = None
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve(settings: MetricsSettings, service: str) -> MetricsServer | None:
    """Serve this process's metrics as `service` (None when OLVM_METRICS_PORT is 0 or the port is taken)."""
    global lag_interval
    SERVICE.info({"service": service})
    if not settings.port:
        return None
    try:
        server, thread = start_http_server(settings.port, addr=settings.host, registry=REGISTRY)
    except OSError as e:
        log.error("metrics not served: cannot listen on %s:%d (OLVM_METRICS_HOST, OLVM_METRICS_PORT): %s",
                  settings.host, settings.port, e.strerror or e)
        return None
    lag_interval = settings.lag_interval
    served = MetricsServer(server, thread)
    log.info("metrics at %s", served.address)
    return served
