"""One API process per test module (apiserver.py), against the session's broker and moto."""
from __future__ import annotations

import pytest

from tests.services.api.apiserver import ApiServer, api_settings, start_api


@pytest.fixture(scope="module")
def api(broker, moto_endpoint, tmp_path_factory) -> ApiServer:
    data = tmp_path_factory.mktemp("api")
    server = start_api(api_settings(broker, moto_endpoint, data / "data", login_attempts=3, login_lockout=30),
                       data / "api.log")
    yield server
    server.process.stop()
