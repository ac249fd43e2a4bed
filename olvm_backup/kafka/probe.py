"""Whether the broker answers at all: one TCP connection to a bootstrap address, so that the CLI can say at once
that it is not there instead of waiting out a Kafka client's retries (and printing its errors)."""
from __future__ import annotations

import asyncio

from ..config import KafkaSettings, host_ports
from ..errors import BackupError

PROBE_TIMEOUT = 3.0  # seconds a bootstrap address has to accept a connection


class BrokerUnreachable(BackupError):
    template = "the broker at {where} does not answer (is the stack up? `olvm-backup status`){reason}"

    def __init__(self, where: str, reason: str = "") -> None:
        super().__init__(reason, where=where)


async def answers(kafka: KafkaSettings, timeout: float = PROBE_TIMEOUT) -> bool:
    """True when any bootstrap address accepts a TCP connection within `timeout` seconds."""
    for host, port in host_ports(kafka.bootstrap_servers):
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, asyncio.TimeoutError):
            continue
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
        return True
    return False


async def require_broker(kafka: KafkaSettings, reason: str = "") -> None:
    """BrokerUnreachable unless the broker answers; `reason` is added to the message (what was going on)."""
    if not await answers(kafka):
        raise BrokerUnreachable(kafka.bootstrap_servers, reason)
