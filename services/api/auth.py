"""Logging in and out, who am I, and the API's own description."""
from __future__ import annotations

import asyncio
import logging
import math

from aiohttp import web

from .context import CONTEXT
from .errors import ApiError, bad_input
from .inputs import field, json_body, unknown_fields
from .routing import PUBLIC, ROUTES, Route
from .security import LOGIN_TOKEN, SESSION, clear_session_cookies, set_session_cookies

log = logging.getLogger(__name__)

MAX_NAME = 320  # a local name is at most 64 characters, an engine account's user@profile longer

TOKEN = {"type": "object", "properties": {
    "token": {"type": "string", "description": "send as Authorization: Bearer TOKEN (also set as the session "
                                               "cookie, for the console)"},
    "token_type": {"type": "string"}, "expires_at": {"type": "number", "description": "UNIX seconds"},
    "user": {"type": "string"}, "role": {"type": "string", "enum": ["admin", "operator"]},
    "csrf_token": {"type": "string", "description": "X-CSRF-Token for state-changing requests made with the cookie"}}}


async def login(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    doc = await json_body(request)
    unknown_fields(doc, {"username", "password"})
    name = field(doc, "username", str)
    password = field(doc, "password", str)
    if len(name) > MAX_NAME:
        raise bad_input("username", f"longer than {MAX_NAME} characters")
    address = request.remote or "?"
    # counted as wrong until the password is found right: logins sent at once cannot outrun the limit
    wait = ctx.limiter.begin(name, address)
    if wait > 0:
        raise ApiError(429, f"too many wrong passwords for {name} or from {address}: try again in {math.ceil(wait)}s",
                       "password", headers={"Retry-After": str(math.ceil(wait))})
    who = await _check_password(ctx, name, password)
    if who is None:
        log.warning("login refused for %r from %s", name, address)  # %r: a name is the caller's, newlines included
        raise ApiError(401, "wrong user name or password", "password")
    role, stamp = who
    ctx.limiter.succeeded(name, address)
    token, session = ctx.sessions.open(name, role, stamp)
    log.info("%s (%s) logged in from %s", name, role, address)
    response = web.json_response({"token": token, "token_type": "Bearer", "expires_at": session.expires_at,
                                  "user": name, "role": role, "csrf_token": session.csrf})
    set_session_cookies(response, token, session.csrf, ctx.settings.api.session_ttl)
    return response


async def _check_password(ctx, name: str, password: str) -> tuple[str, str] | None:
    """(role, session stamp) when the password is the user's: an engine account OLVM_API_ENGINE_USERS names is
    checked by the engine's SSO, any other name against the local users file."""
    from olvm_backup.config import parse_engine_users

    from .sso import engine_password_ok

    role = parse_engine_users(ctx.settings.api.engine_users).get(name)
    if role is not None:
        return (role, sso_stamp(role)) if await engine_password_ok(ctx.settings.engine, name, password) else None
    user = await asyncio.to_thread(ctx.users.authenticate, name, password)  # scrypt: off the event loop
    return None if user is None else (user.role, user.stamp())


def sso_stamp(role: str) -> str:
    """The stamp of an engine account's session: its role comes from the settings, not the users file."""
    return f"sso:{role}"


async def logout(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    ctx.sessions.close(request[LOGIN_TOKEN])  # the login the guard accepted, whether by bearer token or by cookie
    response = web.json_response({"logged_out": request[SESSION].user})
    clear_session_cookies(response)
    return response


async def me(request: web.Request) -> web.Response:
    s = request[SESSION]
    return web.json_response({"user": s.user, "role": s.role, "expires_at": s.expires_at, "csrf_token": s.csrf})


async def openapi(request: web.Request) -> web.Response:
    from importlib.metadata import PackageNotFoundError, version

    from .openapi import document

    try:
        v = version("olvm-backup")
    except PackageNotFoundError:
        v = "0"
    return web.json_response(document(request.app[ROUTES], v))


ROUTES_AUTH = [
    Route("POST", "/api/login", login, "Log in with a user name and password: a bearer token and the console's "
          "session cookie", role=PUBLIC, tag="auth", returns=TOKEN, errors=(401, 429),
          body={"type": "object", "required": ["username", "password"],
                "properties": {"username": {"type": "string"}, "password": {"type": "string", "format": "password"}}}),
    Route("POST", "/api/logout", logout, "End this login (token and cookie)", tag="auth"),
    Route("GET", "/api/me", me, "Who this login is: user, role, expiry and the CSRF token", tag="auth"),
    Route("GET", "/api/openapi.json", openapi, "This API's OpenAPI 3 document", tag="auth"),
]
