"""The wire contract: topics, record types, and the envelope they travel in. Imports nothing of olvm_backup:
it stands alone (a test checks)."""
from . import records
from .envelope import SCHEMA_MAJOR, SCHEMA_MINOR, Record, decode, encode, record_types
from .errors import DecodeError, SchemaVersionError
from .records import (
    BackupEvent, BackupOutcome, BackupRequest, ChunkData, DeadLetter, DiskOutcome, PackStored, PolicyEvent,
    ReadTask, RepositoryEvent, RestoreEvent, RestoreOutcome, RestoreRequest, StoreFault, TaskResult, TransferGone,
)
from .topics import ALL_TOPICS, Topic

__all__ = [
    "SCHEMA_MAJOR", "SCHEMA_MINOR", "Record", "decode", "encode", "record_types", "records", "ALL_TOPICS", "Topic",
    "DecodeError", "SchemaVersionError",
    "BackupEvent", "BackupOutcome", "BackupRequest", "ChunkData", "DeadLetter", "DiskOutcome", "PackStored",
    "PolicyEvent", "ReadTask", "RepositoryEvent", "RestoreEvent", "RestoreOutcome", "RestoreRequest", "StoreFault",
    "TaskResult", "TransferGone",
]
