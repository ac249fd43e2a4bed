"""What a test running the CLI's main() in process sets up around it: the environment its settings come from, and
the root logger main() configures for the process, put back after the test."""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator, Mapping


def olvm_environ(monkeypatch, environ: Mapping[str, str]) -> None:
    """Settings only from `environ`: every OLVM_ variable of the environment the tests run in is removed first."""
    for name in [n for n in os.environ if n.startswith("OLVM_")]:
        monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)


@contextlib.contextmanager
def root_logging_kept() -> Iterator[None]:
    """main() sets up logging for the process (a handler masking the test's secrets): not for the next test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
