"""The embedded stack's repository key: `up` makes a new bucket an encrypted repository, with a passphrase it
generates into the data dir when none is configured, so the first command gives encrypted backups and no passphrase
ever travels on a command line or into a log.

The generated passphrase is a file (mode 0600) the services and the CLI are pointed at
(OLVM_REPOSITORY_PASSWORD_FILE) when nothing else is configured; losing it loses the backups.
"""
from __future__ import annotations

import dataclasses
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Settings

if TYPE_CHECKING:  # the CLI imports this module for every command: no object store client for `config`
    from ..objectstore import ObjectStore

PASSWORD_FILE = "repository.password"


def generated_password_file(settings: Settings) -> Path:
    return settings.data_dir / PASSWORD_FILE


def _configured(settings: Settings) -> bool:
    r = settings.repository
    return bool(r.password or r.password_file or r.key_file)


def _use(settings: Settings, path: Path) -> Settings:
    return dataclasses.replace(settings, repository=dataclasses.replace(settings.repository, password_file=str(path)))


def adopt_generated_password(settings: Settings) -> Settings:
    """`settings` with the passphrase `up` generated, when none is configured and there is one."""
    path = generated_password_file(settings)
    return _use(settings, path) if not _configured(settings) and path.exists() else settings


def _generate(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")


async def prepare_repository(store: ObjectStore, settings: Settings) -> tuple[Settings, Path | None]:
    """The settings the services open the repository with, and the passphrase file generated now (None when
    none was). A bucket that is no repository yet is initialised encrypted, unless OLVM_REPOSITORY_ENCRYPT says
    otherwise."""
    from ..repository.keyring import init_repository, read_config

    settings = adopt_generated_password(settings)
    if await read_config(store) is not None:
        return settings, None
    if not settings.repository.encrypt:  # asked for in so many words (OLVM_REPOSITORY_ENCRYPT=false)
        await init_repository(store, settings.repository, encrypt=False)
        return settings, None
    generated = None
    if not _configured(settings):
        generated = generated_password_file(settings)
        _generate(generated)
        settings = _use(settings, generated)
    await init_repository(store, settings.repository)
    return settings, generated
