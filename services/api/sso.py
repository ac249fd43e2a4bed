"""Checking an engine account's password with the engine's own SSO (OLVM_API.md §1.2, §1.6): the password grant
`POST /ovirt-engine/sso/oauth/token`, and the token it gives revoked at once (`/ovirt-engine/services/sso-logout`),
so a console login leaves no session open on the engine. The engine answers a wrong password with a JSON `error`
(HTTP 400); its answer's status is not what tells. Only accounts OLVM_API_ENGINE_USERS names may log in this way,
with the role it gives them."""
from __future__ import annotations

import logging
import ssl
from urllib.parse import urlsplit

import aiohttp

from olvm_backup.config import EngineSettings
from olvm_backup.errors import BackupError

log = logging.getLogger(__name__)

TIMEOUT = aiohttp.ClientTimeout(total=30)


class SsoUnavailable(BackupError):
    template = "the engine's SSO at {url} did not answer: {reason}"


def _base(engine: EngineSettings) -> str:
    parts = urlsplit(engine.url)
    return f"{parts.scheme}://{parts.netloc}"


def _tls(engine: EngineSettings) -> ssl.SSLContext | bool:
    if engine.insecure:
        return False
    return ssl.create_default_context(cafile=engine.ca_file or None)


async def engine_password_ok(engine: EngineSettings, username: str, password: str) -> bool:
    """Whether the engine's SSO accepts `password` for `username` (user@profile). SsoUnavailable when it cannot
    say (no engine configured, unreachable, an answer that is not its JSON)."""
    if not engine.url:
        raise SsoUnavailable("no engine configured (OLVM_ENGINE_URL)", url="-")
    base = _base(engine)
    url = f"{base}/ovirt-engine/sso/oauth/token"
    form = {"grant_type": "password", "scope": "ovirt-app-api", "username": username, "password": password}
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            async with http.post(url, data=form, headers={"Accept": "application/json"}, ssl=_tls(engine)) as r:
                answer = await r.json(content_type=None)
            if isinstance(answer, list):
                answer = answer[0] if answer else {}
            if not isinstance(answer, dict):
                raise SsoUnavailable(f"an answer that is not a JSON object (HTTP {r.status})", url=url)
            if "error" in answer or not answer.get("access_token"):
                return False
            try:  # the token was only proof of the password: revoked now
                async with http.post(f"{base}/ovirt-engine/services/sso-logout", ssl=_tls(engine),
                                     data={"scope": "ovirt-app-api", "token": answer["access_token"]},
                                     headers={"Accept": "application/json"}):
                    pass
            except aiohttp.ClientError as e:
                log.warning("revoking the engine token of %s's login failed: %s", username, e)
            return True
    except (aiohttp.ClientError, ValueError, OSError) as e:
        raise SsoUnavailable(str(e) or type(e).__name__, url=url) from None
