"""Checkpoints the engine need not keep, removed once a restore point is committed.

Each checkpoint is a bitmap in every image of the VM's disks, which the engine carries and redefines whenever
the VM starts; the next incremental starts from the newest restore point's checkpoint, and none can start from an
invalid one. The rest go, from the oldest up. This is housekeeping: what cannot be removed now is said in a
progress event and tried again after the next backup (the choice is made afresh from the engine's list each
time), and it never fails the backup, whose restore point exists already.
"""
from __future__ import annotations

import logging
from typing import Awaitable, Callable

from olvm_backup.engine import Engine, EngineGaveUp
from olvm_backup.engine import cbt
from olvm_backup.retry import ENGINE_TIDY

from .chain import stale_checkpoints

log = logging.getLogger(__name__)


async def tidy_checkpoints(engine: Engine, vm_id: str, keep: str | None, say: Callable[[str], Awaitable[None]]) -> None:
    """Remove the VM's checkpoints older than `keep` and every invalid one; tell `say` what was done."""
    try:
        stale = stale_checkpoints(await cbt.checkpoints(engine, vm_id, policy=ENGINE_TIDY), keep)
    except Exception as e:  # an outage, or anything else: the restore point is committed, the backup done
        log.warning("could not list the checkpoints of VM %s: %s", vm_id, e)
        await say(f"could not list the engine's checkpoints to remove the old ones (tried again after the next "
                  f"backup): {e}")
        return
    removed: list[str] = []
    failed: list[str] = []
    for cp in stale:
        try:
            await cbt.remove_checkpoint(engine, vm_id, cp.checkpoint_id)
            removed.append(cp.checkpoint_id)
        except Exception as e:
            log.warning("could not remove checkpoint %s of VM %s: %s", cp.checkpoint_id, vm_id, e)
            failed.append(f"{cp.checkpoint_id} ({cp.state}): {e}")
            if isinstance(e, EngineGaveUp):  # away or busy: every other removal would wait as long
                failed.extend(f"{c.checkpoint_id} ({c.state}): not tried" for c in stale[len(removed) + len(failed):])
                break
    if removed:
        await say(f"removed {len(removed)} checkpoint(s) from the engine that no backup will start from: "
                  f"{', '.join(removed)}")
    if failed:
        await say(f"could not remove {len(failed)} checkpoint(s) from the engine (tried again after the next "
                  f"backup): {'; '.join(failed)}")
