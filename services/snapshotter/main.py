"""Snapshotter wiring: backup requests in, engine backups, read tasks and manifests out.

It runs one backup at a time per process (run several for parallel VMs: the
requests topic is partitioned by VM), and a request id once (gate.py: a
duplicate delivery is told, not run). Before taking requests, and every
SWEEP_EVERY seconds after, it closes what abandoned backups (of a killed
snapshotter, here or on another host, and of its own jobs whose cleanup the
engine refused; see journal.py) left open on the engine.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

from olvm_backup.repository.chunkindex import ChunkIndex
from olvm_backup.config import Settings
from olvm_backup.engine import Engine
from olvm_backup.kafka import Bus, Consumer, Message
from olvm_backup.kafka.follow import Follower
from olvm_backup.format.chunks import ChunkCodec
from olvm_backup.repository.sealedstore import open_sealed
from schemas import BackupEvent, BackupRequest
from schemas.topics import BACKUP_EVENTS, BACKUP_REQUESTS, PACKS, READ_RESULTS, STORE_FAULTS

from .gate import run_once
from .job import Context
from .commands import held_note
from .journal import JournalEntry, clean_leftovers, running_backups
from .tracker import Tracker
from .waves import sweep

log = logging.getLogger(__name__)

GROUP = "snapshotter"
MAX_JOB_MS = 24 * 3600 * 1000  # a backup runs inside the poll loop: allow it a day before the group gives up
SWEEP_EVERY = 30.0  # seconds between two looks for abandoned backups and stale chunk topics


async def main(settings: Settings) -> None:
    name = f"snapshotter@{socket.gethostname()}:{os.getpid()}"
    index = ChunkIndex()
    tracker = Tracker(index)
    async with open_sealed(settings) as (store, sealer), Bus(settings.kafka, client_id=name) as bus, \
            Engine(settings.engine) as engine:
        async with Follower(settings.kafka, PACKS, tracker.on_pack, client_id=name + "/packs"), \
                Follower(settings.kafka, READ_RESULTS, tracker.on_result, client_id=name + "/results"), \
                Follower(settings.kafka, STORE_FAULTS, tracker.on_fault, client_id=name + "/faults"):
            await index.load(store)
            await recover(settings, store, engine, bus)
            ctx = Context(settings, engine, store, bus, tracker, index, ChunkCodec.for_writing(sealer).chunk_hash)

            async def on_request(request: BackupRequest, where: Message) -> None:
                await run_once(ctx, request)  # a request id that already ran, or runs, is not run again

            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(keep_recovering(settings, store, engine, bus))
                async with Consumer(settings.kafka, bus, [BACKUP_REQUESTS], GROUP, client_id=name, max_batch=1,
                                    max_poll_interval_ms=MAX_JOB_MS) as consumer:
                    await consumer.run(on_request)


async def recover(settings: Settings, store, engine: Engine, bus: Bus) -> None:
    """Close what abandoned backups left on the engine (of killed snapshotters, and of jobs whose own cleanup
    failed), and free their chunk topics. A killed snapshotter's backup is not failed: its request was never
    committed, so it runs again from the start (a new backup) when a snapshotter takes it, and that run sends the
    request's one final event; this one only says why it starts over."""
    async def interrupted(entry: JournalEntry) -> None:
        await bus.publish(BACKUP_EVENTS, BackupEvent(
            request_id=entry.request_id, backup_id=entry.backup_id, vm=entry.vm_id, kind="progress",
            message=f"backup {entry.backup_id} was interrupted (its snapshotter stopped); what it held open on the "
                    "engine is being closed, and the request runs again from the start when a snapshotter takes it"
                    + held_note(entry.commands),
            at=time.time(), detail={"interrupted": entry.backup_id}), key=entry.request_id)

    await clean_leftovers(store, engine, interrupted)
    await sweep(settings.kafka, bus, await running_backups(store))


async def keep_recovering(settings: Settings, store, engine: Engine, bus: Bus) -> None:
    """Every SWEEP_EVERY seconds: another snapshotter may have died with backups and chunk topics open."""
    while True:
        await asyncio.sleep(SWEEP_EVERY)
        try:
            await recover(settings, store, engine, bus)
        except Exception as e:  # the engine, broker or store is away for a moment: try again next round
            log.warning("could not clean up after abandoned backups: %s", e)
