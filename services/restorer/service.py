"""Restorer wiring: restore requests in, VMs rebuilt through the engine and imageio."""
from __future__ import annotations

import time

from olvm_backup.config import Settings
from olvm_backup.kafka import Bus, Message
from olvm_backup.service import consume_forever
from schemas import RestoreEvent, RestoreRequest
from schemas.topics import RESTORE_EVENTS, RESTORE_REQUESTS

GROUP = "restorer"


async def handle_request(bus: Bus, request: RestoreRequest, where: Message) -> None:
    # The restore job lands with issue 5 ("Restore a VM from any restore point").
    await bus.publish(RESTORE_EVENTS, RestoreEvent(
        request_id=request.request_id, restore_point=request.restore_point, kind="failed", at=time.time(),
        message="the restore job is not built yet"), key=request.request_id)


async def main(settings: Settings) -> None:
    await consume_forever(settings, GROUP, [RESTORE_REQUESTS], handle_request)
