"""Logins and sessions against the API's app on a real socket, in process (no engine, store or broker): wrong
passwords sent all at once cannot outrun the limit, a stranger's wrong passwords lock the stranger out and not the
user, and a progress stream ends with its login (expired or logged out) instead of following the job for hours."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from olvm_backup.config import ApiSettings, Settings
from olvm_backup.users import Users, users_file
from services.api import jobs
from services.api.app import make_app
from services.api.context import ApiContext
from services.api.jobwatch import JobWatch

PASSWORDS = {"admin": "admin-password-1", "oper": "operator-password-1"}


def _settings(tmp_path: Path, **api) -> Settings:
    users = Users(users_file(tmp_path))
    users.add("admin", "admin", PASSWORDS["admin"])
    users.add("oper", "operator", PASSWORDS["oper"])
    return Settings(data_dir=tmp_path, api=ApiSettings(**api))


async def _login(session, base: str, user: str, password: str) -> int:
    async with session.post(f"{base}/api/login", json={"username": user, "password": password}) as r:
        return r.status


async def test_wrong_passwords_sent_at_once_cannot_outrun_the_limit(tmp_path):
    app = make_app(_settings(tmp_path, login_attempts=3, login_lockout=60), connected=False)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        base = str(client.make_url("")).rstrip("/")
        async with aiohttp.ClientSession() as s:
            statuses = await asyncio.gather(*(_login(s, base, "admin", f"guess-{i}") for i in range(20)))
    assert sorted(statuses) == [401] * 3 + [429] * 17


async def test_a_strangers_wrong_passwords_lock_the_stranger_out_not_the_user(tmp_path):
    app = make_app(_settings(tmp_path, login_attempts=3, login_lockout=60), connected=False)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        base = str(client.make_url("")).rstrip("/")
        # the stranger, from another address of this host
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))) as stranger:
            assert [await _login(stranger, base, "admin", f"guess-{i}") for i in range(3)] == [401] * 3
            assert await _login(stranger, base, "admin", PASSWORDS["admin"]) == 429
        async with aiohttp.ClientSession() as user:
            assert await _login(user, base, "admin", PASSWORDS["admin"]) == 200


@pytest.fixture
def quick_keepalive(monkeypatch):
    monkeypatch.setattr(jobs, "KEEPALIVE", 0.5)


async def _stream_lasts(client, token: str, rid: str, limit: float) -> float:
    """Seconds the job's progress stream stayed open (at most `limit`: then it is still open)."""
    started = time.monotonic()
    r = await client.get(f"/api/jobs/{rid}/events", headers={"Authorization": f"Bearer {token}"})
    assert r.status == 200, await r.text()
    try:
        await asyncio.wait_for(r.read(), limit)
    except asyncio.TimeoutError:
        pass
    finally:
        r.close()
    return time.monotonic() - started


async def test_a_progress_stream_ends_when_its_login_expires_or_is_logged_out(tmp_path, quick_keepalive):
    settings = _settings(tmp_path, session_ttl=2.0)
    context = ApiContext.for_settings(settings)
    context.jobs = JobWatch(settings.kafka)  # not following the broker: the job below never ends
    context.jobs.asked("backup", "req-1", {"vm": "web1"})
    async with TestClient(TestServer(make_app(settings, context=context, connected=False))) as client:
        r = await client.post("/api/login", json={"username": "oper", "password": PASSWORDS["oper"]})
        token = (await r.json())["token"]
        assert await _stream_lasts(client, token, "req-1", 8) < 4  # ends at the login's expiry (2 s)
        r = await client.get("/api/jobs/req-1/events", headers={"Authorization": f"Bearer {token}"})
        assert r.status == 401

        r = await client.post("/api/login", json={"username": "oper", "password": PASSWORDS["oper"]})
        token = (await r.json())["token"]
        following = asyncio.ensure_future(_stream_lasts(client, token, "req-1", 8))
        await asyncio.sleep(0.5)
        r = await client.post("/api/logout", headers={"Authorization": f"Bearer {token}"})
        assert r.status == 200
        assert await following < 2  # ended at its next keep-alive, not at the expiry
