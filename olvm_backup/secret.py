"""A string that never shows itself in logs, reprs, topics or manifests."""
from __future__ import annotations


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The real value: call it only where the value leaves for its server."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __reduce__(self):  # pickling would carry the value out of the process
        raise TypeError("a Secret cannot be pickled")


def read_secret_file(path: str) -> Secret:
    """The first line of a file (its line ending dropped), as a password file holds it; OSError if unreadable."""
    with open(path, encoding="utf-8") as f:
        return Secret(f.readline().rstrip("\r\n"))
