"""Restorer wiring: restore requests in, VMs rebuilt through the engine and imageio."""
from __future__ import annotations

import os
import socket
import time

from olvm_backup import metrics
from olvm_backup.config import Settings
from olvm_backup.engine import Engine
from olvm_backup.kafka import Consumer, Bus, Message
from olvm_backup.repository.sealedstore import open_sealed
from schemas import RestoreRequest
from schemas.topics import RESTORE_REQUESTS

from .job import RestoreJob

GROUP = "restorer"
MAX_JOB_MS = 24 * 3600 * 1000


async def main(settings: Settings) -> None:
    name = f"restorer@{socket.gethostname()}:{os.getpid()}"
    async with open_sealed(settings) as (store, sealer), Bus(settings.kafka, client_id=name) as bus, \
            Engine(settings.engine) as engine:

        async def on_request(request: RestoreRequest, where: Message) -> None:
            started = time.monotonic()
            vm_id = await RestoreJob(settings, engine, store, bus, request, sealer).run()
            metrics.job_ended("restore", "completed" if vm_id is not None else "failed", time.monotonic() - started)

        async with Consumer(settings.kafka, bus, [RESTORE_REQUESTS], GROUP, client_id=name, max_batch=1,
                            max_poll_interval_ms=MAX_JOB_MS) as consumer:
            await consumer.run(on_request)
