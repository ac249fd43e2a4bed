"""Wrong passwords slow the next login down: after `attempts` failures in a row for a user name, or from a client
address, logins for it are refused until `lockout` seconds have passed (429 with Retry-After), whatever the password.
A success clears the user's count and the address's. Pure: the clock is passed in."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0


class LoginLimiter:
    MAX_KEYS = 10_000  # bounds memory under a flood of made-up names

    def __init__(self, attempts: int, lockout: float, clock: Callable[[], float] = time.time) -> None:
        self._attempts = attempts
        self._lockout = lockout
        self._clock = clock
        self._failures: dict[str, _Failures] = {}

    def retry_after(self, user: str, address: str) -> float:
        """Seconds until a login for `user` from `address` may be tried; 0 when it may now."""
        now = self._clock()
        waits = [f.locked_until - now for key in (f"user:{user}", f"addr:{address}")
                 if (f := self._failures.get(key)) is not None]
        return max([0.0, *waits])

    def failed(self, user: str, address: str) -> None:
        now = self._clock()
        if len(self._failures) >= self.MAX_KEYS:
            self._failures = {k: f for k, f in self._failures.items() if f.locked_until > now}
        for key in (f"user:{user}", f"addr:{address}"):
            f = self._failures.setdefault(key, _Failures())
            f.count += 1
            if f.count >= self._attempts:
                f.locked_until = now + self._lockout
                f.count = 0

    def succeeded(self, user: str, address: str) -> None:
        for key in (f"user:{user}", f"addr:{address}"):
            self._failures.pop(key, None)
