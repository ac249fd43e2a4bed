"""Logins that expire: a random token per login, kept (as its SHA-256) in memory with its user, role, expiry and
its CSRF token. The same token is the API's bearer token and the console's session cookie; a restart of the API
logs everyone out, which is what a lost session should cost. Pure: the clock is passed in."""
from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Session:
    user: str
    role: str
    expires_at: float
    csrf: str  # what a state-changing request made with the cookie must carry (X-CSRF-Token)
    stamp: str = ""  # the user's entry as it was at login (users.stamp): a removed user or a new password ends it


def _key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    def __init__(self, ttl: float, clock: Callable[[], float] = time.time) -> None:
        self._ttl = ttl
        self._clock = clock
        self._by_key: dict[str, Session] = {}

    def open(self, user: str, role: str, stamp: str = "") -> tuple[str, Session]:
        self._expire()
        token = secrets.token_urlsafe(32)
        session = Session(user, role, self._clock() + self._ttl, secrets.token_urlsafe(24), stamp)
        self._by_key[_key(token)] = session
        return token, session

    def get(self, token: str) -> Session | None:
        session = self._by_key.get(_key(token))
        if session is None or session.expires_at <= self._clock():
            self._by_key.pop(_key(token), None)
            return None
        return session

    def close(self, token: str) -> None:
        self._by_key.pop(_key(token), None)

    def close_user(self, user: str) -> None:
        """Every session of a user (removed, or their password changed)."""
        self._by_key = {k: s for k, s in self._by_key.items() if s.user != user}

    def _expire(self) -> None:
        now = self._clock()
        self._by_key = {k: s for k, s in self._by_key.items() if s.expires_at > now}
