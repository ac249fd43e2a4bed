"""The CLI run in process, as its tests do."""
from __future__ import annotations

import pytest

from tests.cli_env import root_logging_kept


@pytest.fixture(autouse=True)
def _logging_restored():
    with root_logging_kept():
        yield
