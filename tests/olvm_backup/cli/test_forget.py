"""`olvm-backup forget` as an operator runs it against moto: a restore point under S3 Object Lock is refused with the
reason and left whole (still listed, still verified); without a lock it leaves the catalog, and the removal is
published on repository.events."""
from __future__ import annotations

import asyncio
import dataclasses


from olvm_backup.cli.main import main
from olvm_backup.config import RepositorySettings, Settings, to_environ
from olvm_backup.objectstore import open_store
from olvm_backup.repository import catalog, keyring
from olvm_backup.repository.sealedstore import sealed
from olvm_backup.secret import Secret
from schemas import decode
from schemas.topics import REPOSITORY_EVENTS
from tests.cli_env import olvm_environ

from tests.olvm_backup.repository.test_encrypted_repository import backup


def _repository(monkeypatch, tmp_path, s3_settings, **lock) -> Settings:
    """An encrypted repository holding restore point b1 of vm1, and the CLI's environment pointed at it."""
    settings = Settings(data_dir=tmp_path, s3=dataclasses.replace(s3_settings, **lock),
                        repository=RepositorySettings(password=Secret("a passphrase for these tests")))

    async def make() -> None:
        async with open_store(settings.s3) as store:
            sealer = await keyring.init_repository(store, settings.repository, n=2 ** 12)
            await backup(sealed(store, sealer), sealer)
    asyncio.run(make())
    olvm_environ(monkeypatch, to_environ(settings))
    return settings


def _listed(settings: Settings) -> list[str]:
    async def ids() -> list[str]:
        async with open_store(settings.s3) as store:
            return [e.backup_id for e in await catalog.entries(store)]
    return asyncio.run(ids())


def test_a_locked_restore_point_cannot_be_forgotten_and_the_command_says_why(monkeypatch, tmp_path, s3_settings,
                                                                             capsys, bus):
    settings = _repository(monkeypatch, tmp_path, s3_settings, object_lock_days=30, object_lock_mode="COMPLIANCE")
    assert main(["forget", "b1", "--dry-run"]) == 0
    assert "locked until" in capsys.readouterr().out
    assert main(["forget", "b1"]) == 1
    err = capsys.readouterr().err
    assert "restore point b1 of web-secret-name cannot be forgotten" in err, err
    assert "backups/vm1/b1/" in err and "locked until" in err and "(compliance)" in err, err
    assert _listed(settings) == ["b1"]
    assert bus.published[REPOSITORY_EVENTS.full_name(bus.prefix)] == []  # nothing removed, nothing published
    assert main(["verify", "b1"]) == 0  # nothing of it went: the OVF is there too
    assert "Object Lock: locked until" in capsys.readouterr().out


def test_an_unlocked_restore_point_is_forgotten(monkeypatch, tmp_path, s3_settings, capsys, bus):
    settings = _repository(monkeypatch, tmp_path, s3_settings)
    assert main(["forget", "b1"]) == 0
    [event] = [decode(s.value) for s in bus.published[REPOSITORY_EVENTS.full_name(bus.prefix)]]
    assert (event.action, event.backup_id, event.vm, event.reason, event.actor) == \
        ("forgotten", "b1", "vm1", "forget by alice@host", "alice@host")
    assert "forgot restore point b1" in capsys.readouterr().out
    assert _listed(settings) == []
    assert main(["verify", "b1"]) == 1
    assert "no restore point b1" in capsys.readouterr().err
