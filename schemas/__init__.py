"""The wire contract: topics, record types, and the envelope they travel in."""
from . import records
from .envelope import SCHEMA_MAJOR, SCHEMA_MINOR, Record, decode, encode, record_types
from .records import (
    BackupEvent, BackupRequest, ChunkData, DeadLetter, PackStored, ReadTask, RestoreEvent, RestoreRequest,
    StoreFault, TaskResult,
)
from .topics import ALL_TOPICS, Topic

__all__ = [
    "SCHEMA_MAJOR", "SCHEMA_MINOR", "Record", "decode", "encode", "record_types", "records", "ALL_TOPICS", "Topic",
    "BackupEvent", "BackupRequest", "ChunkData", "DeadLetter", "PackStored", "ReadTask", "RestoreEvent",
    "RestoreRequest", "StoreFault", "TaskResult",
]
