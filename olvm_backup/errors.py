"""Typed errors shared by every service.

Each error says whether retrying can help (`retriable`); the consumer loop and
the retry helper branch on that attribute, never on the message text.
"""
from __future__ import annotations


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
    adapter tries it again. The last error is the `__cause__`; its message is repeated here."""

    template = "{what}: gave up after {attempts} attempt(s) in {seconds}s: {reason}"


class ConfigError(BackupError):
    template = "configuration: {reason}"


class DecodeError(BackupError):
    """A record that does not decode or does not validate: never retried."""

    template = "cannot decode record: {reason}"


class SchemaVersionError(DecodeError):
    template = "unsupported schema version {version} (this build reads major {supported}): {reason}"


class StoreError(RetriableError):
    template = "object store: {reason}"


class ObjectNotFound(BackupError):
    template = "object not found: {key}"

    def __init__(self, key: str) -> None:
        super().__init__("", key=key)
        self.key = key


class ProcessStartError(BackupError):
    template = "could not start {name}: {reason}"
