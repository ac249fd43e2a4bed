"""Logging set up once per process: one line per event, the service name in front, secrets masked."""
from __future__ import annotations

import logging
import re
import sys
from typing import Iterable


class _RedactSecrets(logging.Filter):
    """Last line of defence: a secret value that reaches a log line is replaced by ***."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = record.getMessage()
            masked = message
            for secret in self._secrets:
                masked = masked.replace(secret, "***")
            if masked != message:
                record.msg, record.args = masked, None
        return True


class _DeletedWaveTopics(logging.Filter):
    """aiokafka logs an ERROR whenever a topic it follows disappears. A backup wave's chunk topic is deleted by
    design once its chunks are stored (schemas/TOPICS.md): for those, the line is DEBUG."""

    GONE = re.compile(r"Topic \S*chunks\.\S+ not found in cluster metadata")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG and self.GONE.search(record.getMessage()):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def setup_logging(level: str, service: str, secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The Kafka client is chatty at INFO about every rebalance and metadata refresh.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("aiokafka.cluster").addFilter(_DeletedWaveTopics())
    logging.getLogger("botocore").setLevel(max(logging.WARNING, root.level))
