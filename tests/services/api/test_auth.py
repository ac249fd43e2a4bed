"""Logging in to the API: every route needs a login, roles, CSRF with the session cookie, wrong passwords
rate-limited, and no secret in any answer or log line."""
from __future__ import annotations

import time

from services.api.app import api_routes

from tests.services.api.apiserver import PASSWORDS


def _concrete(path: str) -> str:
    """A route's path with made-up values for its parameters."""
    import re
    return re.sub(r"{[^}]+}", "x", path)


def test_every_route_without_a_login_is_401(api):
    checked = 0
    for route in api_routes():
        if route.role is None:
            continue
        r = api.client.request(route.method, _concrete(route.path), {} if route.method != "GET" else None)
        assert r.status == 401, (route.method, route.path, r.status, r.body)
        assert r.json()["field"] == "Authorization"
        checked += 1
        bad = api.client.request(route.method, _concrete(route.path), token="not-a-token")
        assert bad.status == 401, (route.method, route.path, bad.status)
    assert checked >= 10


def test_a_login_gives_a_token_that_works_and_ends_with_logout(api):
    r = api.client.login("oper")
    assert r.status == 200
    doc = r.json()
    assert doc["role"] == "operator" and doc["expires_at"] > time.time() + 3600
    cookies = r.cookies()
    assert cookies["olvm_session"] == doc["token"]
    session_cookie = next(h for h in r.headers.get_all("Set-Cookie") if h.startswith("olvm_session="))
    assert "HttpOnly" in session_cookie and "SameSite=Strict" in session_cookie and "Secure" in session_cookie
    me = api.client.request("GET", "/api/me", token=doc["token"])
    assert me.status == 200 and me.json()["user"] == "oper"
    assert api.client.request("POST", "/api/logout", token=doc["token"]).status == 200
    assert api.client.request("GET", "/api/me", token=doc["token"]).status == 401


def test_an_operator_cannot_change_a_policy(api):
    token = api.client.token("oper")
    for method, path in (("POST", "/api/policies"), ("PUT", "/api/policies/nightly"),
                         ("DELETE", "/api/policies/nightly")):
        r = api.client.request(method, path, {"name": "nightly"}, token=token)
        assert r.status == 403, (method, path, r.status, r.body)
        assert "admin" in r.json()["error"]


def test_a_forged_cross_site_request_with_the_cookie_is_refused(api):
    login = api.client.login("admin")
    cookies = login.cookies()
    csrf = login.json()["csrf_token"]
    cookie = f"olvm_session={cookies['olvm_session']}; olvm_csrf={cookies['olvm_csrf']}"
    body = {"vm": "no-such-vm"}
    # the cookie alone (what a forged form or fetch from another site carries): refused before anything is done
    r = api.client.request("POST", "/api/backups", body, headers={"Cookie": cookie})
    assert r.status == 403 and r.json()["field"] == "csrf_token"
    r = api.client.request("POST", "/api/backups", body, headers={"Cookie": cookie, "X-CSRF-Token": "forged"})
    assert r.status == 403 and r.json()["field"] == "csrf_token"
    r = api.client.request("POST", "/api/backups", body, headers={
        "Cookie": cookie, "X-CSRF-Token": csrf, "Origin": "https://evil.example"})
    assert r.status == 403 and r.json()["field"] == "Origin"
    # the same request from the console itself gets through the guard (and fails on its input instead)
    r = api.client.request("POST", "/api/backups", body, headers={
        "Cookie": cookie, "X-CSRF-Token": csrf, "Origin": api.client.origin})
    assert r.status not in (401, 403), r.body
    # reading needs no CSRF token
    assert api.client.request("GET", "/api/me", headers={"Cookie": cookie}).status == 200


def test_users_managed_with_the_cli_log_in_and_a_new_password_ends_their_sessions(api, tmp_path):
    import os
    import subprocess
    import sys

    from olvm_backup.config import to_environ

    env = {**os.environ, **to_environ(api.settings)}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "olvm_backup.cli.main", "user", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    first, second = tmp_path / "first", tmp_path / "second"
    first.write_text("carol-password-1\n")
    second.write_text("carol-password-2\n")
    added = cli("add", "carol", "--role", "operator", "--password-file", str(first))
    assert added.returncode == 0, added.stderr
    assert "carol" in cli("list").stdout
    assert cli("passwd", "carol", "--password", "x").returncode != 0  # never a password as an argument
    token = api.client.login("carol", "carol-password-1").json()["token"]
    assert api.client.request("GET", "/api/me", token=token).status == 200
    changed = cli("passwd", "carol", "--password-file", str(second))
    assert changed.returncode == 0 and "sessions end" in changed.stdout
    assert api.client.request("GET", "/api/me", token=token).status == 401
    token = api.client.login("carol", "carol-password-2").json()["token"]
    removed = cli("remove", "carol")
    assert removed.returncode == 0 and "sessions end" in removed.stdout  # as they do, not "until it expires"
    assert api.client.request("GET", "/api/me", token=token).status == 401
    assert "carol-password" not in api.log.read_text()


def test_a_body_that_is_not_utf8_is_a_400_naming_the_body(api):
    token = api.client.token("oper")
    for raw, kind in ((b'{"vm": "\xff"}', "application/json"), (b'{"vm": "a"}', "application/json; charset=nope")):
        r = api.client.request("POST", "/api/backups", raw=raw, token=token, headers={"Content-Type": kind})
        if kind.endswith("nope"):
            assert r.status != 500, r.body  # the charset named is not what JSON is read as
            continue
        assert r.status == 400, r.body
        assert r.json()["field"] == "body" and "UTF-8" in r.json()["error"]
    assert "Traceback" not in api.log.read_text()


def test_a_wrong_password_is_refused_then_logins_are_locked_out(api):
    # last in the module: it locks this address out
    r = api.client.login("admin", "wrong-password")
    assert r.status == 401 and r.json()["field"] == "password"
    api.client.login("admin", "wrong-again")
    api.client.login("admin", "wrong-thrice")  # the third (OLVM_API_LOGIN_ATTEMPTS=3) locks the name out
    locked = api.client.login("admin")  # even with the right password, for a while
    assert locked.status == 429
    assert 0 < int(locked.headers["Retry-After"]) <= 30
    assert "token" not in locked.json()
    log = api.log.read_text()
    for secret in (*PASSWORDS.values(), "wrong-password"):
        assert secret not in log
