"""API wiring: the application (app.py) served over HTTPS with the configured certificate until cancelled.

There is no plain-HTTP mode: sessions and passwords travel only over TLS (`olvm-backup up` generates a
self-signed certificate when none is configured)."""
from __future__ import annotations

import asyncio
import logging
import ssl

from aiohttp import web

from olvm_backup.config import Settings
from olvm_backup.errors import ConfigError
from olvm_backup.users import Users, users_file

from .app import make_app

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 3.0  # seconds the requests under way get when the service stops


def tls_context(settings: Settings) -> ssl.SSLContext:
    api = settings.api
    if not api.tls_cert or not api.tls_key:
        raise ConfigError("the API serves HTTPS only: set OLVM_API_TLS_CERT and OLVM_API_TLS_KEY (`olvm-backup up` "
                          "generates a self-signed pair)")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(api.tls_cert, api.tls_key)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"OLVM_API_TLS_CERT/OLVM_API_TLS_KEY: cannot load {api.tls_cert}: {e}") from None
    return context


async def main(settings: Settings) -> None:
    context = tls_context(settings)
    # Open progress streams would hold a stop for aiohttp's default minute: a few seconds, then they are cut.
    runner = web.AppRunner(make_app(settings), access_log=log, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.api.host, settings.api.port, ssl_context=context)
        await site.start()
        log.info("API listening on https://%s:%d/", settings.api.host, settings.api.port)
        if not Users(users_file(settings.data_dir)).load() and not settings.api.engine_users:
            log.warning("no user can log in: add one with `olvm-backup user add NAME --role admin`")
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
