"""The console's pages in process (no engine, store or broker: the pages are shells their scripts fill from the API):
guarded like the API (no login: sent to the login page), escaped, role-dependent, with no secret in them, and
their scripts and style sheet served from this server only. The browser test (test_console_browser.py) drives
them for real."""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp.test_utils import TestClient, TestServer

from olvm_backup.config import Settings
from olvm_backup.users import Users, users_file
from services.api.app import make_app
from services.api.pages.assets import STATIC
from services.api.pages.render import fill
from services.api.pages.views import local_path

PASSWORDS = {"admin": "admin-password-1", "oper": "operator-password-1"}
PAGES = ("/", "/restore-points", "/restore-points/rp-1/files", "/jobs", "/jobs/req-1", "/policies")


@pytest.fixture
async def client(tmp_path: Path):
    users = Users(users_file(tmp_path))
    users.add("admin", "admin", PASSWORDS["admin"])
    users.add("oper", "operator", PASSWORDS["oper"])
    app = make_app(Settings(data_dir=tmp_path), connected=False)
    async with TestClient(TestServer(app)) as c:
        yield c


async def login(client, user: str) -> dict:
    r = await client.post("/api/login", json={"username": user, "password": PASSWORDS[user]})
    assert r.status == 200, await r.text()
    return await r.json()


async def get_page(client, path: str, token: str) -> str:
    r = await client.get(path, headers={"Authorization": f"Bearer {token}"}, allow_redirects=False)
    assert r.status == 200, (path, r.status)
    assert r.content_type == "text/html"
    return await r.text()


async def test_a_page_without_a_login_sends_to_the_login_page(client):
    for path in PAGES:
        r = await client.get(path, allow_redirects=False)
        assert r.status == 302, path
        assert r.headers["Location"] == f"/login?next={path}"
    r = await client.get("/restore-points/rp-1/files?path=/disk/p1/etc", allow_redirects=False)
    location = urlsplit(r.headers["Location"])
    assert location.path == "/login"
    assert parse_qs(location.query) == {"next": ["/restore-points/rp-1/files?path=/disk/p1/etc"]}
    page = await (await client.get(r.headers["Location"])).text()
    assert 'data-next="/restore-points/rp-1/files?path=/disk/p1/etc"' in page
    r = await client.get("/login?next=/jobs")
    assert r.status == 200
    page = await r.text()
    assert 'data-next="/jobs"' in page and 'src="/static/login.js"' in page
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "", "jobs",
                                    "/\t/evil.example", "/\n/evil.example", "/\r/evil.example", " //evil.example"])
def test_the_login_page_goes_on_to_a_path_of_this_server_only(target):
    assert local_path(target) == "/"
    assert local_path("/restore-points?vm=a") == "/restore-points?vm=a"
    assert local_path("/restore-points?vm=my vm") == "/restore-points?vm=my vm"


async def test_pages_carry_the_csrf_token_never_the_session_and_nothing_inline(client):
    doc = await login(client, "oper")
    for path in PAGES:
        page = await get_page(client, path, doc["token"])
        assert f'<meta name="csrf-token" content="{doc["csrf_token"]}">' in page, path
        assert doc["token"] not in page, path
        # scripts and styles from files only (the Content-Security-Policy allows nothing inline)
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), path
        assert " style=" not in page and "<style" not in page, path
        assert not re.search(r"<[^>]+\son[a-z]+=", page), path
        assert re.search(r'<script type="module" src="/static/[a-z]+\.js"></script>', page), path
        assert "http://" not in page and "https://" not in page, f"{path} links outside this server"


async def test_an_operator_gets_no_policy_editor_an_admin_does(client):
    oper, admin = await login(client, "oper"), await login(client, "admin")
    as_operator = await get_page(client, "/policies", oper["token"])
    as_admin = await get_page(client, "/policies", admin["token"])
    assert 'data-role="operator"' in as_operator and "new-policy-form" not in as_operator
    assert 'data-role="admin"' in as_admin and "new-policy-form" in as_admin
    assert f'name="csrf_token" value="{admin["csrf_token"]}"' in as_admin


async def test_what_a_path_carries_is_escaped(client):
    doc = await login(client, "oper")
    evil = '"><script>alert(1)</script>'
    page = await get_page(client, "/restore-points?vm=" + evil.replace("<", "%3C").replace(">", "%3E")
                          .replace('"', "%22"), doc["token"])
    assert "<script>alert(1)" not in page
    assert 'data-vm="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in page
    assert "&lt;b&gt;" in fill("job.html", request_id="<b>")


async def test_the_scripts_and_style_sheet_are_served_by_name_only(client):
    names = sorted(p.name for p in STATIC.iterdir())
    assert {"console.js", "console.css", "login.js"} <= set(names)
    for name in names:
        r = await client.get(f"/static/{name}")
        assert r.status == 200, name
        assert r.content_type == ("text/css" if name.endswith(".css") else "text/javascript")
        body = await r.text()
        assert "http://" not in body and "https://" not in body, f"{name} reaches outside this server"
        assert ".innerHTML" not in body and "insertAdjacentHTML" not in body and "eval(" not in body, name
    for bad in ("/static/nope.js", "/static/..%2F__init__.py", "/static/%2e%2e%2fviews.py"):
        r = await client.get(bad)
        assert r.status == 404, bad
