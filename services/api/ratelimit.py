"""Wrong passwords slow the next logins down, without letting a stranger lock a user out (429 with Retry-After,
whatever the password, while a lock lasts):
- a name from one client address: `attempts` wrong passwords in a row lock that name out there for `lockout`
  seconds (guessing one user's password);
- a client address: `attempts` wrong passwords in a row, whatever the names, lock the address out (trying one
  password on many users);
- a name from anywhere: NAME_FACTOR times `attempts` wrong passwords within `lockout` seconds lock the name out
  everywhere (a guess spread over many addresses). One address alone cannot get there, as it is locked out after
  `attempts`: a stranger's wrong passwords for `admin` lock the stranger out, not the admin.
Names count case-folded. An attempt counts as wrong from the moment it starts (`begin`), so many sent at once cannot
outrun the count while their passwords are checked; a success (`succeeded`) takes that back and clears the name's
count at that address and the address's. Pure: the clock is passed in."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

NAME_FACTOR = 10


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0
    since: float = 0.0  # when the count started (the name's window)


class LoginLimiter:
    MAX_KEYS = 10_000  # bounds memory under a flood of made-up names

    def __init__(self, attempts: int, lockout: float, clock: Callable[[], float] = time.time) -> None:
        self._attempts = attempts
        self._lockout = lockout
        self._clock = clock
        self._failures: dict[str, _Failures] = {}

    def _keys(self, user: str, address: str) -> dict[str, int]:
        """Each count a login touches, with the wrong passwords in a row that lock it."""
        name = user.casefold()
        return {f"pair:{address}:{name}": self._attempts, f"addr:{address}": self._attempts,
                f"user:{name}": self._attempts * NAME_FACTOR}

    def retry_after(self, user: str, address: str) -> float:
        """Seconds until a login for `user` from `address` may be tried; 0 when it may now."""
        now = self._clock()
        waits = [f.locked_until - now for key in self._keys(user, address)
                 if (f := self._failures.get(key)) is not None]
        return max([0.0, *waits])

    def begin(self, user: str, address: str) -> float:
        """A login starts: the seconds to wait when it is refused (nothing counted then), else 0, and it counts as
        wrong until `succeeded` says otherwise."""
        wait = self.retry_after(user, address)
        if wait <= 0:
            self.failed(user, address)
        return wait

    def failed(self, user: str, address: str) -> None:
        now = self._clock()
        if len(self._failures) >= self.MAX_KEYS:
            self._failures = {k: f for k, f in self._failures.items() if f.locked_until > now}
        for key, limit in self._keys(user, address).items():
            f = self._failures.setdefault(key, _Failures(since=now))
            if key.startswith("user:") and now - f.since > self._lockout:
                f.count, f.since = 0, now  # the name's count is of a window, not of all time
            f.count += 1
            if f.count >= limit:
                f.locked_until = now + self._lockout
                f.count, f.since = 0, now

    def succeeded(self, user: str, address: str) -> None:
        pair, addr, name = self._keys(user, address)
        self._failures.pop(pair, None)
        self._failures.pop(addr, None)
        if (f := self._failures.get(name)) is not None and f.count > 0:
            f.count -= 1  # this attempt, counted wrong when it began
