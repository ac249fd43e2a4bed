"""The API as a real process over HTTPS on a real socket, with an admin and an operator. `ApiClient` speaks to it
as a script or a browser would (http.client, TLS checked against the generated certificate)."""
from __future__ import annotations

import dataclasses
import http.client
import json
import os
import ssl
import sys
import uuid
from pathlib import Path

from olvm_backup.config import ApiSettings, KafkaSettings, S3Settings, Settings, to_environ
from olvm_backup.secret import Secret
from olvm_backup.stack.certificate import self_signed
from olvm_backup.stack.processes import ManagedProcess, free_port, port_open
from olvm_backup.users import Users, users_file
from tests.conftest import plain_repository
from tests.pipeline.conftest import Pipeline, init_repository, pipeline_settings, prepare_topics

PASSWORDS = {"admin": "admin-password-1", "oper": "operator-password-1"}


@dataclasses.dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self):
        return json.loads(self.body)

    def cookies(self) -> dict[str, str]:
        out = {}
        for header in self.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            out[name.strip()] = rest.split(";")[0]
        return out


class ApiClient:
    def __init__(self, port: int, ca: Path) -> None:
        self.port = port
        self.origin = f"https://127.0.0.1:{port}"
        self.tls = ssl.create_default_context(cafile=str(ca))

    def request(self, method: str, path: str, body=None, *, token: str | None = None, headers: dict | None = None,
                raw: bytes | None = None, timeout: float = 60) -> Response:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.tls, timeout=timeout)
        h = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        if token:
            h["Authorization"] = f"Bearer {token}"
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            return Response(r.status, r.headers, r.read())
        finally:
            conn.close()

    def stream(self, path: str, *, token: str, timeout: float = 120, last_event_id: int | None = None):
        """The server-sent events of `path`, each as (event, data as JSON), until the server ends the stream."""
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.tls, timeout=timeout)
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        try:
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            assert r.status == 200, r.read()
            assert r.headers["Content-Type"].startswith("text/event-stream")
            event, data = "", []
            while line := r.readline():
                line = line.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[len("event: "):]
                elif line.startswith("data: "):
                    data.append(line[len("data: "):])
                elif not line and data:
                    yield event, json.loads("\n".join(data))
                    event, data = "", []
        finally:
            conn.close()

    def login(self, user: str, password: str | None = None) -> Response:
        return self.request("POST", "/api/login", {"username": user, "password": password or PASSWORDS[user]})

    def token(self, user: str) -> str:
        r = self.login(user)
        assert r.status == 200, r.body
        return r.json()["token"]


@dataclasses.dataclass
class ApiServer:
    settings: Settings
    process: ManagedProcess
    client: ApiClient
    log: Path


def api_settings(broker: str, moto_endpoint: str, data_dir: Path, **overrides) -> Settings:
    tag = uuid.uuid4().hex[:8]
    cert, key = self_signed(data_dir / "api", ["127.0.0.1"])
    return Settings(data_dir=data_dir,
                    kafka=KafkaSettings(bootstrap_servers=broker, topic_prefix=f"a{tag}.", partitions=2),
                    s3=S3Settings(endpoint_url=moto_endpoint, bucket=f"a-{tag}", access_key=Secret("testing"),
                                  secret_key=Secret("testing")),
                    api=ApiSettings(host="127.0.0.1", port=free_port(), tls_cert=str(cert), tls_key=str(key),
                                    **overrides))


def start_api(settings: Settings, log: Path) -> ApiServer:
    """The users, the repository and the topics the API needs, then the API itself."""
    import asyncio

    from olvm_backup.kafka import ensure_topics

    users = Users(users_file(settings.data_dir))
    if not users.load():
        users.add("admin", "admin", PASSWORDS["admin"])
        users.add("oper", "operator", PASSWORDS["oper"])
    plain_repository(settings)
    asyncio.run(ensure_topics(settings.kafka))
    env = {**os.environ, **to_environ(settings)}
    process = ManagedProcess("api", [sys.executable, "-m", "services.api"], env=env, log_file=log,
                             ready=lambda: port_open("127.0.0.1", settings.api.port), ready_timeout=60)
    process.start()
    return ApiServer(settings, process, ApiClient(settings.api.port, Path(settings.api.tls_cert)), log)


def pipeline_with_api(broker: str, moto_endpoint: str, sim, logs: Path, *, api: dict | None = None, **pipeline):
    """The snapshotter, a reader, a writer, the restorer and the auditor against `sim`, and the API (`api`: its
    settings besides port and certificate), on one prefix and bucket: yields the ApiServer, stops them all after.
    `pipeline`: pipeline_settings' own (task_size...)."""
    settings = pipeline_settings(broker, moto_endpoint, sim, logs / "data", **pipeline)
    cert, key = self_signed(settings.data_dir / "api", ["127.0.0.1"])
    settings = dataclasses.replace(settings, api=ApiSettings(port=free_port(), tls_cert=str(cert), tls_key=str(key),
                                                             **(api or {})))
    prepare_topics(settings)
    init_repository(settings)
    services = Pipeline(settings, logs)
    server = None
    try:
        for name in ("snapshotter", "reader", "writer", "restorer", "auditor"):
            services.start(name, name)
        server = start_api(settings, logs / "api.log")
        yield server
    finally:
        if server is not None:
            server.process.stop()
        services.stop_all()
