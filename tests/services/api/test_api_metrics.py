"""The API's requests in its metrics (services/api/metrics.py): counted by route template and the status the
caller got, refusals by the guard included, and unknown paths under one label."""
from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from olvm_backup.config import Settings
from olvm_backup.metrics import REGISTRY
from services.api.app import make_app


def requests(route: str, status: str, method: str = "GET") -> float:
    return REGISTRY.get_sample_value("olvm_api_requests_total",
                                     {"method": method, "route": route, "status": status}) or 0.0


async def test_requests_are_counted_by_route_and_status():
    refused, unknown = requests("/api/vms/{vm}", "401"), requests("unmatched", "404")
    async with TestClient(TestServer(make_app(Settings(), connected=False))) as client:
        for name in ("web01", "db02"):  # two VMs, one route
            assert (await client.get(f"/api/vms/{name}")).status == 401
        assert (await client.get("/no/such/page")).status == 404
    assert requests("/api/vms/{vm}", "401") == refused + 2
    assert requests("unmatched", "404") == unknown + 1
    assert (REGISTRY.get_sample_value("olvm_api_request_duration_seconds_count", {"route": "/api/vms/{vm}"})
            or 0) >= 2


async def test_unusual_methods_share_one_label():
    def series() -> int:
        return sum(len(m.samples) for m in REGISTRY.collect() if m.name == "olvm_api_requests")

    async with TestClient(TestServer(make_app(Settings(), connected=False))) as client:
        await client.request("SEARCH", "/api/vms")
        before = series()
        for method in ("PROPFIND", "MKCOL", "LOCK", "UNLOCK", "PURGE"):
            assert (await client.request(method, "/api/vms")).status == 405
    assert series() == before
    assert requests("unmatched", "405", "other") >= 6
