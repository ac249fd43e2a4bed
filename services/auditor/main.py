"""Auditor wiring: requests, their steps and policy changes in, the audit trail's objects out (auditor.py).

Run one (or more: the group shares the topics' partitions, and a record read twice is one entry when read back).
"""
from __future__ import annotations

import os
import socket

from olvm_backup.audit.trail import AUDITED
from olvm_backup.config import Settings
from olvm_backup.kafka import Bus, Consumer
from olvm_backup.repository.sealedstore import open_sealed

from .auditor import Auditor

GROUP = "auditor"


async def main(settings: Settings) -> None:
    name = f"auditor@{socket.gethostname()}:{os.getpid()}"
    async with open_sealed(settings) as (store, _), Bus(settings.kafka, client_id=name) as bus, \
            Consumer(settings.kafka, bus, AUDITED, GROUP, client_id=name, max_batch=256) as consumer:
        await Auditor(store, consumer, settings.kafka.topic_prefix, name).run()
