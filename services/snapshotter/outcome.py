"""What a backup's `completed` and `failed` events say of it: the typed outcome the CLI's summary shows."""
from __future__ import annotations

from olvm_backup.format.manifest import Manifest
from schemas import BackupOutcome, DiskOutcome

from .quiesce import Consistency
from .steps import StepTimes


def completed(manifest: Manifest, steps: StepTimes, duration: float,
              consistency: Consistency | None) -> BackupOutcome:
    """The outcome of a committed restore point, read from its manifest (what the restore point holds, said once)."""
    return BackupOutcome(
        duration=round(duration, 3), steps=steps.in_order(), **_consistency(consistency),
        mode=manifest.mode, bytes_read=sum(d.bytes_read for d in manifest.disks), bytes_stored=manifest.stored_bytes(),
        disks={d.name: DiskOutcome(mode=d.mode, reason=d.reason, bytes_read=d.bytes_read, bytes_new=d.bytes_new)
               for d in manifest.disks},
        vm_id=manifest.vm_id, to_checkpoint=manifest.to_checkpoint)


def failed(error: BaseException, steps: StepTimes, duration: float,
           consistency: Consistency | None) -> BackupOutcome:
    """A failure's outcome: the steps say how far the backup got, and how long each took."""
    return BackupOutcome(duration=round(duration, 3), steps=steps.in_order(), **_consistency(consistency),
                         error_type=type(error).__name__)


def summary(backup_id: str, vm_name: str, outcome: BackupOutcome) -> str:
    """The `completed` event's message."""
    return (f"backup {backup_id} of {vm_name} completed: {outcome.mode}, read {outcome.bytes_read} bytes, "
            f"stored {outcome.bytes_stored} new bytes")


def _consistency(consistency: Consistency | None) -> dict[str, str]:
    return {"consistency": consistency.code, "consistency_note": consistency.says} if consistency else {}
