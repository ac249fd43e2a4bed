"""Typed errors shared by every service.

Each error says whether retrying can help (`retriable`); the consumer loop and
the retry helper branch on that attribute, never on the message text. One tree:
each adapter's errors are one family under BackupError (EngineError in
engine/connection.py, StoreError here, imageio's in imageio.py), whose members
set `retriable`, and whose spent retry budget is the family's GaveUp (an engine
that stayed away is an EngineError too, so `except EngineError` sees it).
"""
from __future__ import annotations

# The wire contract's errors are declared in schemas/, which imports nothing of this package: a record that does
# not decode (DecodeError) or was written by an incompatible build (SchemaVersionError). Same shape as
# BackupError (a template over fields), not retriable; not under BackupError, so catch them by name.
from schemas.errors import DecodeError, SchemaVersionError  # noqa: F401  (re-exported)


class BackupError(Exception):
    """Root of the project's errors. The message is a template over fields."""

    retriable = False
    template = "{reason}"

    def __init__(self, reason: str = "", **fields: object) -> None:
        self.reason = reason
        self.fields = fields
        super().__init__(self.template.format(reason=reason, **fields))


class RetriableError(BackupError):
    """A fault that may go away: a timeout, a lock held by someone else, a 5xx."""

    retriable = True


class GaveUp(BackupError):
    """A request its adapter retried until its budget (retry.py) was spent. Not retriable: nothing above the
    adapter tries it again. The last error is `last` (and the `__cause__`); its message is repeated here.

    An adapter's family has its own (`class EngineGaveUp(GaveUp, EngineError)`), passed to `retry(gave_up=)`,
    so a caller catching the family sees the spent budget too, and one catching GaveUp sees every adapter's."""

    retriable = False  # first in its subclasses' bases: a family whose members are retriable does not make it so
    template = "{what}: gave up after {attempts} attempt(s) in {seconds}s: {reason}"

    def __init__(self, reason: str = "", *, last: BaseException | None = None, **fields: object) -> None:
        super().__init__(reason, **fields)
        self.last = last


class ConfigError(BackupError):
    template = "configuration: {reason}"


class StoreError(BackupError):
    """The object store's family. Retriable unless a member says otherwise: most of its faults pass (a 5xx, a
    throttle, a timeout, a dropped connection, a short read)."""

    retriable = True
    template = "object store: {reason}"


class StoreRefused(StoreError):
    """An answer that trying again will not change: a 4xx, an upload that lost a part."""

    retriable = False


class StoreFull(StoreError):
    """No room left where the store keeps its objects: nothing passes until someone makes room."""

    retriable = False
    template = "the object store's disk is full ({reason})"


class StoreGaveUp(GaveUp, StoreError):
    """The store kept failing until its budget (OBJECT_STORE) was spent."""


class ObjectNotFound(StoreError):
    retriable = False
    template = "object not found: {key}"

    def __init__(self, key: str) -> None:
        super().__init__("", key=key)
        self.key = key


class ObjectLocked(StoreRefused):
    """A delete of an object under S3 Object Lock retention: refused by the product before the store would turn
    it into a delete marker (a versioned bucket's answer), so prune and GC can skip it and say why."""

    template = "{key} is {lock}: it cannot be deleted before then"

    def __init__(self, key: str, lock: str) -> None:
        super().__init__("", key=key, lock=lock)
        self.key = key


class ProcessStartError(BackupError):
    template = "could not start {name}: {reason}"
