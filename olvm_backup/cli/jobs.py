"""Commands that ask the pipeline for work and follow it: backup, restore."""
from __future__ import annotations

import asyncio
import sys
import time
import uuid

from schemas import BackupEvent, BackupRequest, RestoreEvent, RestoreRequest
from schemas.records import CommandSpec
from schemas.topics import BACKUP_EVENTS, BACKUP_REQUESTS, RESTORE_EVENTS, RESTORE_REQUESTS

from ..config import Settings
from ..kafka import Bus
from ..kafka.follow import Follower
from ..kafka.probe import BrokerUnreachable, answers, require_broker
from .progress import ProgressBar, duration, human

FINAL = {"completed", "failed", "cancelled"}
PROBE_EVERY = 2.0  # seconds without an event between two checks that the broker still answers
PROBES_LOST = 2  # checks in a row it did not answer before the CLI says so and stops following (a restart passes)


async def submit(settings: Settings, requests_topic, events_topic, request, key: str, wait: bool,
                 timeout: float, summary) -> tuple[int, object | None]:
    """Publish a request; with `wait`, follow its events (subscribed before publishing) to the end.
    Returns the exit code and the final event (None without `wait` or when none came in time)."""
    events: asyncio.Queue = asyncio.Queue()

    def mine(event) -> None:
        if event.request_id == request.request_id:
            events.put_nowait(event)

    # Asked first, so that a broker that is not there is one clear line at once, not a Kafka client's retries.
    await require_broker(settings.kafka)
    async with Bus(settings.kafka, client_id="olvm-backup-cli") as bus, \
            Follower(settings.kafka, events_topic, mine, client_id="olvm-backup-cli/events"):
        await bus.publish(requests_topic, request, key=key)
        print(f"requested: {request.request_id}", file=sys.stderr)
        if not wait:
            return 0, None
        return await _follow(events, timeout, summary, settings, request.request_id)


def new_backup_request(vm: str, mode: str, exclude: list[str], quiesce: bool, strategy: str, *,
                       requested_by: str, commands: list[CommandSpec] | None = None) -> BackupRequest:
    """A backup request as the CLI and the API publish it."""
    return BackupRequest(request_id=str(uuid.uuid4()), vm=vm, mode=mode, exclude_disks=exclude, quiesce=quiesce,
                         requested_by=requested_by, requested_at=time.time(), strategy=strategy,
                         commands=commands or [])


def new_restore_request(restore_point: str, *, name: str | None, replace: bool, cluster: str | None,
                        storage_domain: str | None, disks: list[str], target_vm: str | None, power_on: bool,
                        keep_failed: bool, requested_by: str,
                        commands: list[CommandSpec] | None = None) -> RestoreRequest:
    """A restore request as the CLI and the API publish it."""
    return RestoreRequest(request_id=str(uuid.uuid4()), restore_point=restore_point, name=name, replace=replace,
                          cluster=cluster, storage_domain=storage_domain, disks=disks, target_vm=target_vm,
                          power_on=power_on, keep_failed=keep_failed, requested_by=requested_by,
                          requested_at=time.time(), commands=commands or [])


def command_specs(texts: list[str], files: list[str], phases: tuple[str, ...], what: str) -> list[CommandSpec]:
    """The pre/post commands of `--command` (the one-line form) and `--commands-file` (a YAML or JSON list of
    specs, as a policy's `commands`), checked here so that a mistake is said before anything is asked."""
    import yaml

    from ..commands import parse_cli, parse_specs, spec_to_doc
    from ..commands.spec import SpecError

    specs = [parse_cli(text, f"--command {i + 1}") for i, text in enumerate(texts)]
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                doc = yaml.safe_load(f)
        except (OSError, yaml.YAMLError) as e:
            raise SpecError(f"cannot read it ({e})", where=path) from None
        specs += parse_specs(doc.get("commands") if isinstance(doc, dict) else doc, path)
    for spec in specs:
        if spec.phase not in phases:
            raise SpecError(f"phase {spec.phase} is not one of {what}'s ({', '.join(phases)})", where=spec.label)
    return [CommandSpec(**spec_to_doc(s)) for s in specs]


async def request_backup(settings: Settings, vm: str, mode: str, exclude: list[str], quiesce: bool,
                         wait: bool, timeout: float, strategy: str = "cbt",
                         commands: list[CommandSpec] | None = None) -> tuple[int, BackupEvent | None]:
    """Exit code and, with `wait`, the backup's final event."""
    request = new_backup_request(vm, mode, exclude, quiesce, strategy, requested_by="cli", commands=commands)
    return await submit(settings, BACKUP_REQUESTS, BACKUP_EVENTS, request, vm, wait, timeout, _summary)


async def request_restore(settings: Settings, restore_point: str, *, name: str | None, replace: bool,
                          cluster: str | None, storage_domain: str | None, disks: list[str],
                          target_vm: str | None, power_on: bool, keep_failed: bool, wait: bool,
                          timeout: float, commands: list[CommandSpec] | None = None) -> tuple[int, RestoreEvent | None]:
    """Exit code and, with `wait`, the restore's final event."""
    request = new_restore_request(restore_point, name=name, replace=replace, cluster=cluster,
                                  storage_domain=storage_domain, disks=disks, target_vm=target_vm, power_on=power_on,
                                  keep_failed=keep_failed, requested_by="cli", commands=commands)
    return await submit(settings, RESTORE_REQUESTS, RESTORE_EVENTS, request, restore_point, wait, timeout,
                        _restore_summary)


def _restore_summary(bar: ProgressBar, event: RestoreEvent) -> int:
    done = event.outcome
    if event.kind != "completed":
        bar.message(f"{event.kind.upper()}: {event.message}")
        return 1
    bar.message(f"completed: {event.message}")
    if done is None:  # a restorer before format 1.4: its message says what it did
        print(event.vm_id)
        return 0
    bar.message(f"  sent {human(done.bytes_sent)} of data in {duration(done.duration)}; "
                f"disks: {', '.join(done.disks)}; VM is {done.status}")
    bar.message(f"  the restore point's file systems: {done.consistency or 'not recorded'}")
    print(event.vm_id)
    return 0


async def _follow(events: asyncio.Queue, timeout: float, summary, settings: Settings,
                  request_id: str) -> tuple[int, object | None]:
    bar = ProgressBar()
    deadline = time.monotonic() + timeout
    lost = 0
    while True:
        left = deadline - time.monotonic()
        try:
            event = await asyncio.wait_for(events.get(), max(0.1, min(left, PROBE_EVERY)))
        except asyncio.TimeoutError:
            if left <= PROBE_EVERY:
                bar.message(f"no answer within {timeout:.0f}s: is the stack up? (olvm-backup status)")
                return 2, None
            # The Kafka client waits out a broker that went away without telling: ask, and say so.
            lost = 0 if await answers(settings.kafka) else lost + 1
            if lost >= PROBES_LOST:
                raise BrokerUnreachable(settings.kafka.bootstrap_servers,
                                        f"; stopped following request {request_id}") from None
            continue
        lost = 0
        if event.kind == "progress" and event.bytes_total:
            bar.update(event.bytes_done or 0, event.bytes_total)
        elif event.kind in ("accepted", "started", "progress", "stored"):
            bar.message(f"{event.kind}: {event.message}")
        if event.kind in FINAL:
            return summary(bar, event), event


def _summary(bar: ProgressBar, event: BackupEvent) -> int:
    done = event.outcome
    if event.kind != "completed":
        bar.message(f"{event.kind.upper()}: {event.message}")
        if done and done.steps:  # how far a failed backup got, and where its time went
            bar.message(f"  time: {steps_line(done.steps)}")
        return 1
    if done is None:  # a snapshotter before format 1.4: its message says what it did
        bar.message(f"completed: {event.message}")
        print(event.backup_id)
        return 0
    bar.message(f"completed: restore point {event.backup_id} of {event.vm} ({done.mode})")
    bar.message(f"  read {human(done.bytes_read)}, stored {human(done.bytes_stored)} new "
                f"(after dedup and compression), in {duration(done.duration)}")
    for name, disk in done.disks.items():
        why = f" ({disk.reason})" if disk.reason else ""
        bar.message(f"  disk {name}: {disk.mode}{why}, read {human(disk.bytes_read)}, stored {human(disk.bytes_new)}")
    if done.consistency_note or done.consistency:
        bar.message(f"  consistency: {done.consistency_note or done.consistency}")
    if done.steps:
        bar.message(f"  time: {steps_line(done.steps)}")
    print(event.backup_id)
    return 0


def steps_line(steps: dict[str, float]) -> str:
    """`prepare 0.1 s, engine start 0.5 s, ...`: where a backup's time went (the engine is released while the last
    packs are sealed, so those two steps overlap)."""
    def seconds(value: float) -> str:
        return f"{value:.2f} s" if value < 60 else duration(value)

    return ", ".join(f"{name} {seconds(value)}" for name, value in steps.items())
