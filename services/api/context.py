"""What every handler of the API (and every console page) reaches through `request.app[CONTEXT]`: the settings,
the users file, the sessions and the login limiter, and the connections the service holds open while it runs
(the repository, the broker, the engine, the job events it follows), opened by `connect` at startup and closed at
shutdown."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from aiohttp import web

from olvm_backup.config import Settings
from olvm_backup.users import Users, users_file

from .ratelimit import LoginLimiter
from .sessions import Sessions


@dataclass
class ApiContext:
    settings: Settings
    users: Users
    sessions: Sessions
    limiter: LoginLimiter
    store: Any = None    # the repository (SealedStore), open while the service runs
    bus: Any = None      # the Kafka publisher
    engine: Any = None   # olvm_backup.engine.Engine, None without OLVM_ENGINE_URL
    jobs: Any = None     # jobs.JobWatch: the backup and restore events seen since start
    extra: dict[str, Any] = field(default_factory=dict)  # what other parts (pages, metrics) keep per app

    @classmethod
    def for_settings(cls, settings: Settings) -> "ApiContext":
        return cls(settings=settings, users=Users(users_file(settings.data_dir)),
                   sessions=Sessions(settings.api.session_ttl),
                   limiter=LoginLimiter(settings.api.login_attempts, settings.api.login_lockout))


CONTEXT = web.AppKey("context", ApiContext)


async def connect(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the repository, the broker and the engine opened for the service's life, the job events
    followed from now on; all closed in reverse order, also when startup fails half-way."""
    from olvm_backup.engine import Engine
    from olvm_backup.kafka import Bus
    from olvm_backup.repository.sealedstore import open_sealed

    from .jobwatch import JobWatch

    ctx = app[CONTEXT]
    s = ctx.settings
    async with contextlib.AsyncExitStack() as stack:
        ctx.store, _ = await stack.enter_async_context(open_sealed(s))
        ctx.bus = await stack.enter_async_context(Bus(s.kafka, client_id="olvm-backup-api"))
        ctx.jobs = await stack.enter_async_context(JobWatch(s.kafka))
        if s.engine.url:
            ctx.engine = await stack.enter_async_context(Engine(s.engine))
        try:
            yield
        finally:
            ctx.store = ctx.bus = ctx.jobs = ctx.engine = None
