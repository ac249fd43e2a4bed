"""Who may call a route (routing.Route.role) and how they prove it.

- A login is a bearer token (`Authorization: Bearer ...`, for scripts) or the same token in the `olvm_session`
  cookie (HttpOnly, Secure, SameSite=Strict: for the console's pages). Tokens expire (sessions.py).
- A state-changing request (anything but GET, HEAD, OPTIONS) made with the cookie must carry the session's CSRF
  token in `X-CSRF-Token` (or a form's `csrf_token` field), and an `Origin` or `Referer`, when the browser sends
  one, must be this server's. A bearer token needs neither: a browser never attaches it by itself.
- An operator may back up, restore and browse; policy and settings changes need an admin (403).
"""
from __future__ import annotations

import hmac
from urllib.parse import quote, urlsplit

from aiohttp import web

from .context import CONTEXT
from .errors import ApiError
from .routing import ADMIN, PUBLIC, Route

SESSION_COOKIE = "olvm_session"
CSRF_COOKIE = "olvm_csrf"   # readable by the pages' scripts, which send it back as X-CSRF-Token
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
SESSION = web.RequestKey("session", object)
LOGIN_TOKEN = web.RequestKey("login_token", str)  # the login's token (bearer or cookie), for logout and long streams
LOGIN_PAGE = "/login"


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def own_origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def check_origin(request: web.Request) -> None:
    """A browser's Origin (or, without one, Referer) naming another site: a forged cross-site request."""
    origin = request.headers.get("Origin")
    if origin is None and (referer := request.headers.get("Referer")):
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}"
    if origin is not None and origin != own_origin(request):
        raise ApiError(403, f"cross-site request refused (Origin {origin} is not {own_origin(request)})", "Origin")


async def _check_csrf(request: web.Request, expected: str) -> None:
    check_origin(request)
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        given = (await request.post()).get("csrf_token")
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiError(403, f"missing or wrong CSRF token: a request made with the session cookie must send it in "
                            f"{CSRF_HEADER}", "csrf_token")


def _unauthenticated(route: Route, request: web.Request, why: str) -> web.HTTPException:
    if route.kind == "page":
        # back to the same page after the login, its query (a directory, a VM) included
        return web.HTTPFound(f"{LOGIN_PAGE}?next={quote(request.rel_url.raw_path_qs, safe='/')}")
    return ApiError(401, why, "Authorization", headers={"WWW-Authenticate": 'Bearer realm="olvm-backup"'})


def _still_valid(request: web.Request, session) -> bool:
    """A local user's session ends when the user is removed or their password or role changes (the users file is
    read again); an engine account's role is the settings', for the life of the process."""
    if session.stamp.startswith("sso:"):
        return True
    user = request.app[CONTEXT].users.load().get(session.user)
    return user is not None and user.stamp() == session.stamp


def still_logged_in(request: web.Request) -> bool:
    """Whether the login a guarded request came with still holds: for what outlasts the guard's one check (a
    progress stream), which must end when the login expires, is logged out, or its user is removed or changed."""
    session = request.app[CONTEXT].sessions.get(request[LOGIN_TOKEN])
    return session is not None and _still_valid(request, session)


def guard(route: Route):
    """The handler of `route` behind its checks: login, role, CSRF."""
    async def guarded(request: web.Request) -> web.StreamResponse:
        if route.role is PUBLIC:
            if request.method not in SAFE_METHODS:
                check_origin(request)  # a login forged from another site (login CSRF)
            return await route.handler(request)
        sessions = request.app[CONTEXT].sessions
        token = _bearer(request)
        by_cookie = token is None
        if by_cookie:
            token = request.cookies.get(SESSION_COOKIE)
        if not token:
            raise _unauthenticated(route, request, "log in first: POST /api/login, then send the token as "
                                                   "Authorization: Bearer TOKEN")
        session = sessions.get(token)
        if session is None:
            raise _unauthenticated(route, request, "the token is unknown or has expired: log in again")
        if not _still_valid(request, session):
            sessions.close(token)
            raise _unauthenticated(route, request, f"{session.user} was removed or changed since this login: log in "
                                                   "again")
        if route.role == ADMIN and session.role != ADMIN:
            raise ApiError(403, f"{route.method} {route.openapi_path()} needs the admin role; {session.user} is "
                                f"{session.role}", "role")
        if by_cookie and request.method not in SAFE_METHODS:
            await _check_csrf(request, session.csrf)
        request[SESSION] = session
        request[LOGIN_TOKEN] = token
        return await route.handler(request)

    guarded.__name__ = getattr(route.handler, "__name__", "handler")
    return guarded


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every response as it is prepared (streams too): no framing, no sniffing, nothing cached, scripts and
    styles from this server only (pages load theirs as files, no inline script), HTTPS remembered."""
    _headers(response)


def _headers(response: web.StreamResponse) -> None:
    h = response.headers
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Referrer-Policy", "same-origin")
    h.setdefault("Cache-Control", "no-store")
    h.setdefault("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; form-action 'self'")
    h.setdefault("Strict-Transport-Security", "max-age=31536000")


def set_session_cookies(response: web.StreamResponse, token: str, csrf: str, ttl: float) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=int(ttl), path="/", secure=True, httponly=True,
                        samesite="Strict")
    response.set_cookie(CSRF_COOKIE, csrf, max_age=int(ttl), path="/", secure=True, httponly=False,
                        samesite="Strict")


def clear_session_cookies(response: web.StreamResponse) -> None:
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.del_cookie(name, path="/", secure=True, samesite="Strict")
