"""The product's engine adapter pointed at the acceptance tests' simulator (tests/sim/conftest.py), for tests of the
product against a real engine API."""
from __future__ import annotations

from olvm_backup.config import EngineSettings
from olvm_backup.secret import Secret


def engine_settings(sim) -> EngineSettings:
    """The product's settings for a running simulator's engine, from its connection.json."""
    c = sim.connection
    return EngineSettings(url=c["url"], username=c["username"], password=Secret(c["password"]), ca_file=c["ca_file"])
