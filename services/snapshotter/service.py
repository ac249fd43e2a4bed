"""Snapshotter wiring: backup requests in, engine backups, read tasks and manifests out.

It runs one backup at a time per process (run several for parallel VMs: the
requests topic is partitioned by VM). Before taking requests it closes what
an earlier, killed snapshotter left open on the engine.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

from olvm_backup.chunkindex import ChunkIndex
from olvm_backup.config import Settings
from olvm_backup.engine import Engine
from olvm_backup.kafka import Bus, Consumer, Message
from olvm_backup.kafka.follow import Follower
from olvm_backup.objectstore import open_store
from schemas import BackupEvent, BackupRequest
from schemas.topics import BACKUP_EVENTS, BACKUP_REQUESTS, PACKS, READ_RESULTS

from .job import BackupJob, Context
from .journal import clean_leftovers, running_backups
from .tracker import Tracker
from .waves import sweep

log = logging.getLogger(__name__)

GROUP = "snapshotter"
MAX_JOB_MS = 24 * 3600 * 1000  # a backup runs inside the poll loop: allow it a day before the group gives up
SWEEP_EVERY = 30.0


async def main(settings: Settings) -> None:
    name = f"snapshotter@{socket.gethostname()}:{os.getpid()}"
    index = ChunkIndex()
    tracker = Tracker(index)
    async with open_store(settings.s3) as store, Bus(settings.kafka, client_id=name) as bus, \
            Engine(settings.engine) as engine:
        async with Follower(settings.kafka, PACKS, tracker.on_pack, client_id=name + "/packs"), \
                Follower(settings.kafka, READ_RESULTS, tracker.on_result, client_id=name + "/results"):
            await index.load(store)
            for entry in await clean_leftovers(store, engine):
                await bus.publish(BACKUP_EVENTS, BackupEvent(
                    request_id=entry.request_id, backup_id=entry.backup_id, vm=entry.vm_id, kind="failed",
                    message="interrupted (snapshotter stopped); its transfers and engine backup were closed",
                    at=time.time()), key=entry.request_id)
            ctx = Context(settings, engine, store, bus, tracker, index)

            async def on_request(request: BackupRequest, where: Message) -> None:
                await BackupJob(ctx, request).run()
                await sweep(settings.kafka, bus, await running_backups(store))

            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(sweep_chunk_topics(settings, bus, store))
                async with Consumer(settings.kafka, bus, [BACKUP_REQUESTS], GROUP, client_id=name, max_batch=1,
                                    max_poll_interval_ms=MAX_JOB_MS) as consumer:
                    await consumer.run(on_request)


async def sweep_chunk_topics(settings: Settings, bus, store) -> None:
    """Now and every SWEEP_EVERY seconds: chunk topics of backups that are over go (see waves.sweep)."""
    while True:
        try:
            await sweep(settings.kafka, bus, await running_backups(store))
        except Exception as e:  # the broker or the store is away for a moment: try again next round
            log.warning("could not sweep chunk topics: %s", e)
        await asyncio.sleep(SWEEP_EVERY)
