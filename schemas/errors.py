"""The contract's own errors: a record that does not decode, or was written by an incompatible build.

They live here, not in `olvm_backup.errors`, so that the contract stands alone (any consumer can read the
topics with this package and pydantic and msgpack). `olvm_backup.errors` re-exports them. Neither is
retriable: the same bytes fail the same way every time, so a consumer dead-letters them at once.
"""
from __future__ import annotations


class DecodeError(Exception):
    """A record that does not decode or does not validate: never retried. The message is a template over fields."""

    retriable = False
    template = "cannot decode record: {reason}"

    def __init__(self, reason: str = "", **fields: object) -> None:
        self.reason = reason
        self.fields = fields
        super().__init__(self.template.format(reason=reason, **fields))


class SchemaVersionError(DecodeError):
    template = "unsupported schema version {version} (this build reads major {supported}): {reason}"
