"""Record types of every topic (format major 1). TOPICS.md says which record goes where.

Times are UNIX seconds (float); sizes and offsets are bytes; digests are the
lower-case hex BLAKE3 (256-bit) of a chunk's uncompressed bytes.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .envelope import Record

BackupMode = Literal["auto", "full", "incremental"]
ReadMode = Literal["full", "incremental"]  # how a backup, or one disk of it, was read


class Part(BaseModel):
    """A typed part of a record: no envelope or topic of its own. A newer minor's extra fields are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore", strict=False)


class CommandSpec(Part):
    """A pre/post command (1.10), as a policy document writes it (olvm_backup/commands/spec.py checks it; README
    "Pre/post commands"). Never a secret: a guest's SSH key and known-hosts entry are files on the backup node,
    named by path. Fields left None take the spec's defaults."""

    phase: str = Field(description="before, after, after-backup, before-restore or after-restore")
    run: list[str] = Field(min_length=1, description="the argument list")
    where: str = "node"
    name: str | None = None
    timeout: float | None = None
    ignore_exit: str | None = Field(default=None, description="exit codes to ignore: '15,101-150' or '*'")
    stderr: str | None = Field(default=None, description="fail, warn or ignore")
    env: dict[str, str] | None = None
    host: str | None = None
    port: int | None = None
    user: str | None = None
    key_file: str | None = Field(default=None, description="path of the SSH private key on the backup node")
    known_hosts: str | None = Field(default=None, description="path of a known-hosts file on the backup node")
    host_key: str | None = Field(default=None, description="the guest's public host key (OpenSSH line)")


class BackupRequest(Record):
    """Ask for a backup of one VM (from the CLI, a schedule, a policy or a tag trigger)."""

    request_id: str = Field(min_length=1)
    vm: str = Field(min_length=1, description="VM name or id")
    mode: BackupMode = "auto"
    exclude_disks: list[str] = Field(default_factory=list, description="disk names or ids not to back up")
    quiesce: bool = True
    requested_by: str = "cli"
    requested_at: float
    policy: str | None = None
    # 1.9: how to back it up: "cbt" (the engine's incremental backup, checkpoints) or "snapshot" (a VM snapshot kept
    # on the engine, its volumes downloaded through imageio). Absent in an older request: cbt.
    strategy: Literal["cbt", "snapshot"] = "cbt"
    # 1.10: pre/post commands (phases before, after, after-backup), in the order they run within a phase.
    commands: list[CommandSpec] = Field(default_factory=list)


BackupEventKind = Literal[
    "requested", "accepted", "started", "progress", "task_stored", "stored", "completed", "failed", "cancelled",
]


class DiskOutcome(Part):
    """One disk of a committed backup."""

    mode: ReadMode
    reason: str = Field(default="", description="why the disk was read whole (a full)")
    bytes_read: int = Field(default=0, ge=0)
    bytes_new: int = Field(default=0, ge=0, description="stored after dedup and compression")


class BackupOutcome(Part):
    """How a backup ended, on its `completed` and `failed` events: what the CLI's summary shows (1.4)."""

    duration: float = Field(ge=0, description="seconds from acceptance to the end")
    steps: dict[str, float] = Field(default_factory=dict, description=(
        "seconds per step, in the order the steps ran (services/snapshotter/steps.py); a failure's say how far it got"))
    consistency: str = Field(default="", description="the manifest's `consistency` code (FORMAT.md); '' if not known")
    consistency_note: str = Field(default="", description="what that means for this backup, for people")
    error_type: str | None = Field(default=None, description="the error's class name, on a failure")
    # What the committed restore point holds: on `completed` only.
    mode: ReadMode | None = None
    bytes_read: int = Field(default=0, ge=0)
    bytes_stored: int = Field(default=0, ge=0, description="new bytes, after dedup and compression")
    disks: dict[str, DiskOutcome] = Field(default_factory=dict, description="by disk name, in the manifest's order")
    vm_id: str | None = None
    to_checkpoint: str | None = Field(default=None, description="where the next incremental starts")


class BackupEvent(Record):
    """One step of a backup: the progress feed and the audit trail. `completed` and `failed` carry an `outcome`
    (a `failed` from a snapshotter that cleaned up after another one's crash may not); `detail` is free-form
    progress information no reader may depend on."""

    request_id: str
    backup_id: str | None = None
    vm: str
    kind: BackupEventKind
    message: str = ""
    at: float
    bytes_total: int | None = None
    bytes_done: int | None = None
    outcome: BackupOutcome | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class ReadTask(Record):
    """A range of one disk for a reader: small enough to redo cheaply, many enough to share a big disk."""

    backup_id: str
    task_id: str
    disk_id: str
    transfer_url: str
    proxy_url: str | None = None
    incremental: bool
    offset: int = Field(ge=0)
    length: int = Field(gt=0)
    chunk_size: int = Field(gt=0)
    chunk_topic: str  # where this task's chunks go: the topic of its wave, deleted once the wave is stored
    # Connections the reader may open to the ticket: the disk's tasks running at once stay within its max_readers.
    connections: int = Field(default=1, ge=1)
    # The snapshotter's extents of the disk, clipped to [offset, offset + length), so the reader does not ask
    # imageio again. None (a task from before format 1.4): the reader asks imageio for them.
    extents: list[tuple[int, int, bool]] | None = Field(
        default=None, description="(start, length, data): data False reads as zeros; an incremental lists only "
        "its dirty ranges")


class ChunkData(Record):
    """One new chunk, compressed, on its way to a writer."""

    backup_id: str
    task_id: str
    digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    raw_size: int = Field(gt=0)
    # 1.6: "zstd+gcm" and "none+gcm", a chunk of an encrypted repository: compressed (or not), then sealed by the
    # reader with the repository's key, bound to its digest; the topic never carries it in clear.
    codec: Literal["zstd", "none", "zstd+gcm", "none+gcm"]
    data: bytes


class TaskResult(Record):
    """What a reader found in its range: data chunks by offset and zero runs; the rest is unchanged."""

    backup_id: str
    task_id: str
    disk_id: str
    offset: int = Field(ge=0)
    length: int = Field(gt=0)
    chunks: list[tuple[int, int, str]] = Field(default_factory=list, description="(offset, length, digest)")
    zeros: list[tuple[int, int]] = Field(default_factory=list, description="(offset, length)")
    bytes_read: int = 0
    bytes_new: int = 0


# Format 1.5, on read.results beside TaskResult: a snapshotter of 1.4 ignores the unknown record (and waits for its
# stall timeout, as it did before).
class TransferGone(Record):
    """A reader could not read a task: imageio no longer knows the ticket of its transfer (403), which expired or
    was removed. The snapshotter re-opens the disk's transfer and sends the task again, or fails the backup; it
    ignores a report on a task it has the result of or a transfer it already replaced (a late redelivery)."""

    backup_id: str
    task_id: str
    disk_id: str
    transfer_url: str = Field(description="the task's transfer_url: which of the disk's transfers is gone")
    error: str = Field(description="what imageio answered")
    reader: str
    at: float


class PackStored(Record):
    """A pack object is durable in the store: where each chunk it holds lives."""

    pack_key: str
    entries: list[tuple[str, int, int, int, str]] = Field(
        description="(digest, offset in pack, stored length, raw size, codec)")
    writer: str
    at: float


class StoreFault(Record):
    """A writer could not make a pack durable, after the object store's own retries. The pack's chunks were not
    committed, so they come back to a writer; the snapshotter shows the error on each backup the pack served."""

    writer: str
    backup_ids: list[str] = Field(min_length=1)
    chunks: int = Field(gt=0, description="chunks the pack held, of all its backups")
    error: str = Field(description="what the store answered; never a credential")
    at: float


class RestoreRequest(Record):
    request_id: str = Field(min_length=1)
    restore_point: str = Field(min_length=1, description="backup id")
    name: str | None = Field(default=None, description="new VM name; None with replace=False means '<name>-restored'")
    replace: bool = False
    cluster: str | None = None
    storage_domain: str | None = None
    disks: list[str] = Field(default_factory=list, description="disk names or ids; empty = all")
    target_vm: str | None = Field(default=None, description="restore the disks into this existing VM")
    power_on: bool = False
    keep_failed: bool = False
    requested_by: str = "cli"
    requested_at: float
    # 1.10: pre/post commands of the phases before-restore and after-restore.
    commands: list[CommandSpec] = Field(default_factory=list)


RestoreEventKind = Literal["requested", "accepted", "started", "progress", "completed", "failed"]


class RestoreOutcome(Part):
    """How a restore ended, on its `completed` and `failed` events: what the CLI's summary shows (1.4)."""

    duration: float = Field(ge=0, description="seconds from acceptance to the end")
    bytes_sent: int = Field(default=0, ge=0, description="disk data uploaded (zeros are not sent)")
    error_type: str | None = Field(default=None, description="the error's class name, on a failure")
    kept: bool = Field(default=False, description="a failure left what it created in place (keep_failed, or the "
                                                  "original VM already removed)")
    # On `completed` only:
    status: str = Field(default="", description="the VM's status as the engine says it, e.g. down")
    disks: list[str] = Field(default_factory=list, description="names of the disks restored")
    consistency: str = Field(default="", description="the restore point's `consistency`; '' if it has none")


class RestoreEvent(Record):
    """One step of a restore. `completed` and `failed` carry an `outcome`; `detail` is free-form."""

    request_id: str
    restore_point: str
    kind: RestoreEventKind
    message: str = ""
    at: float
    vm_id: str | None = None
    bytes_total: int | None = None
    bytes_done: int | None = None
    outcome: RestoreOutcome | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


PolicyAction = Literal[
    "created", "updated", "deleted", "assigned", "unassigned", "vm_joined", "vm_left", "conflict",
]


class PolicyEvent(Record):
    """A change to a backup policy (1.7), for the audit trail: who (`actor`: "alice@host" from the CLI,
    "scheduler" for what the selection did by itself) and what (`detail`, e.g. the fields that differ, the VM)."""

    policy: str = Field(min_length=1)
    action: PolicyAction
    actor: str = Field(min_length=1)
    detail: dict[str, Any] = Field(default_factory=dict)
    message: str = Field(default="", description="the change in words, for people")
    at: float


RepositoryAction = Literal["forgotten", "pruned", "pack_deleted", "gc", "protected", "unprotected"]


class RepositoryEvent(Record):
    """Something deleted from the repository, or a hold on a restore point changed (1.8), for the audit trail:
    what (`action`, `backup_id` and `vm`, or the pack in `detail`), why (`reason`: the retention rules that no
    longer keep it, "forget by alice@host", the collection that found a pack unnamed) and who (`actor`)."""

    action: RepositoryAction
    backup_id: str | None = None
    vm: str | None = Field(default=None, description="VM id (its name, when known, in `detail.vm_name`)")
    reason: str = ""
    actor: str = Field(min_length=1, description='"alice@host" from the CLI, "scheduler" for a scheduled run')
    at: float
    detail: dict[str, Any] = Field(default_factory=dict)


class DeadLetter(Record):
    """A record no consumer could use, kept with the reason so nothing is lost silently."""

    source_topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    error_type: str
    consumer_group: str
    at: float
