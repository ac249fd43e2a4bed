"""`olvm-backup init` and `olvm-backup key ...` as an operator runs them, settings from the environment, against the
in-memory store; the passphrase shows nowhere: not in the bucket, not in the output, not in logs."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import stat

import pytest

from olvm_backup.cli import keys as cli_keys
from olvm_backup.cli.main import main
from olvm_backup.config import Settings, load_settings
from olvm_backup.crypto import keys
from olvm_backup.logs import setup_logging
from olvm_backup.objectstore.memory import MemoryStore
from olvm_backup.repository.keyring import list_slots, open_repository
from olvm_backup.runtime import secrets_of
from olvm_backup.stack.repokey import PASSWORD_FILE, prepare_repository
from tests.cli_env import olvm_environ

PASSPHRASE = "the operator's first passphrase"
SECOND = "a second passphrase for the safe"


@pytest.fixture
def store(monkeypatch, tmp_path):
    """The CLI's object store, in memory; settings only from the variables a test sets; scrypt cheap."""
    olvm_environ(monkeypatch, {"OLVM_DATA_DIR": str(tmp_path / "data")})
    monkeypatch.setattr(keys, "SCRYPT_N", 2 ** 12)  # tests only
    memory = MemoryStore()

    @contextlib.asynccontextmanager
    async def open_store(settings):
        yield memory
    monkeypatch.setattr(cli_keys, "open_store", open_store)
    return memory


def _bucket(store: MemoryStore) -> bytes:
    async def everything():
        return b"".join([await store.get(i.key) async for i in store.list("")])
    return asyncio.run(everything())


def test_init_list_add_remove_round_trip(store, tmp_path, monkeypatch, capsys):
    password_file, second_file = tmp_path / "pw", tmp_path / "pw2"
    password_file.write_text(PASSPHRASE + "\n")
    second_file.write_text(SECOND + "\n")
    monkeypatch.setenv("OLVM_REPOSITORY_PASSWORD_FILE", str(password_file))

    assert main(["init", "--label", "ops"]) == 0
    out = capsys.readouterr().out
    assert "encrypted (aes-256-gcm)" in out and "loses every backup" in out
    assert main(["init"]) == 1
    assert "initialised here already" in capsys.readouterr().err

    assert main(["key", "add", "--new-password-file", str(second_file), "--label", "safe"]) == 0
    assert "added" in capsys.readouterr().out
    slots = asyncio.run(list_slots(store))
    assert [s["label"] for s in slots] == ["ops", "safe"]
    first, added = (s["id"] for s in slots)

    assert main(["key", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"* {first}") and "passphrase" in line and "ops" in line for line in listed)
    assert any(line.startswith(f"  {added}") and "safe" in line for line in listed)

    assert main(["key", "remove", first]) == 1  # the configured passphrase's own key, without --force
    assert "--force" in capsys.readouterr().err
    monkeypatch.setenv("OLVM_REPOSITORY_PASSWORD_FILE", str(second_file))
    assert main(["key", "remove", first]) == 0
    assert main(["key", "remove", added, "--force"]) == 1
    assert "would lose every backup" in capsys.readouterr().err

    monkeypatch.setenv("OLVM_REPOSITORY_PASSWORD_FILE", str(password_file))
    assert main(["key", "list"]) == 0
    assert "opens none of these" in capsys.readouterr().out
    assert main(["key", "add", "--new-password-file", str(second_file)]) == 1
    assert "opens no key of this repository" in capsys.readouterr().err

    shown = capsys.readouterr()
    for secret in (PASSPHRASE, SECOND):
        assert secret.encode() not in _bucket(store)
        assert secret not in shown.out + shown.err


def test_passwd_from_a_file_and_the_old_passphrase_no_longer_opens(store, tmp_path, monkeypatch, capsys):
    old, new = tmp_path / "old", tmp_path / "new"
    old.write_text(PASSPHRASE + "\n")
    new.write_text(SECOND + "\n")
    monkeypatch.setenv("OLVM_REPOSITORY_PASSWORD_FILE", str(old))
    assert main(["init"]) == 0
    assert main(["key", "passwd", "--new-password-file", str(new)]) == 0
    assert "set OLVM_REPOSITORY_PASSWORD_FILE" in capsys.readouterr().out
    settings = load_settings(environ={"OLVM_REPOSITORY_PASSWORD_FILE": str(new)})
    assert asyncio.run(open_repository(store, settings.repository)).encrypted
    assert main(["key", "list"]) == 0
    assert "opens none of these" in capsys.readouterr().out


def test_a_new_passphrase_is_typed_in_a_terminal_or_read_from_a_file_never_an_argument(store, monkeypatch, capsys):
    monkeypatch.setenv("OLVM_REPOSITORY_PASSWORD", PASSPHRASE)
    assert main(["init"]) == 0
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["key", "add"]) == 1
    assert "give --new-password-file FILE" in capsys.readouterr().err
    for option in (["add", "--new-password"], ["passwd", "--new-pass"]):  # not taken for --new-password-file
        with pytest.raises(SystemExit):
            main(["key", *option, SECOND])
    typed = iter([SECOND, SECOND + " typo"])
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(typed))
    assert main(["key", "add"]) == 1
    assert "differ; nothing changed" in capsys.readouterr().err
    assert len(asyncio.run(list_slots(store))) == 1


def test_init_without_encryption_refuses_a_configured_passphrase(store, monkeypatch, capsys):
    monkeypatch.setenv("OLVM_REPOSITORY_PASSWORD", PASSPHRASE)
    assert main(["init", "--no-encryption"]) == 1
    assert "--no-encryption, yet a passphrase" in capsys.readouterr().err
    monkeypatch.delenv("OLVM_REPOSITORY_PASSWORD")
    assert main(["init", "--no-encryption"]) == 0
    assert "NOT encrypted" in capsys.readouterr().out


def test_a_generated_key_file_is_private_random_and_never_replaced(store, tmp_path, monkeypatch, capsys):
    path = tmp_path / "repo.key"
    assert main(["key", "generate-file", str(path)]) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(path.read_bytes()) == 32
    content = path.read_bytes()
    assert main(["key", "generate-file", str(path)]) == 1
    assert "never overwritten" in capsys.readouterr().err and path.read_bytes() == content
    monkeypatch.setenv("OLVM_REPOSITORY_KEY_FILE", str(path))
    assert main(["init"]) == 0
    assert asyncio.run(list_slots(store))[0]["kind"] == keys.KEY_FILE


def test_up_generates_a_passphrase_file_once_and_every_command_finds_it(tmp_path, monkeypatch):
    monkeypatch.setattr(keys, "SCRYPT_N", 2 ** 12)
    store = MemoryStore()
    settings = dataclasses.replace(Settings(), data_dir=tmp_path / "data")
    prepared, generated = asyncio.run(prepare_repository(store, settings))
    assert generated == tmp_path / "data" / PASSWORD_FILE
    assert stat.S_IMODE(generated.stat().st_mode) == 0o600
    assert prepared.repository.password_file == str(generated)
    passphrase = generated.read_text().strip()
    assert len(passphrase) >= 32 and passphrase.encode() not in _bucket(store)
    again, none = asyncio.run(prepare_repository(store, settings))  # the next `up`: adopted, not made again
    assert none is None and again.repository.password_file == str(generated)
    assert generated.read_text().strip() == passphrase
    assert asyncio.run(open_repository(store, again.repository)).encrypted


def test_up_makes_a_plain_repository_only_when_told_to(tmp_path):
    store = MemoryStore()
    settings = load_settings(environ={"OLVM_REPOSITORY_ENCRYPT": "false", "OLVM_DATA_DIR": str(tmp_path)})
    prepared, generated = asyncio.run(prepare_repository(store, settings))
    assert generated is None and not (tmp_path / PASSWORD_FILE).exists()
    assert not asyncio.run(open_repository(store, prepared.repository)).encrypted


def test_a_passphrase_read_from_a_file_is_masked_in_logs(tmp_path, capsys):
    path = tmp_path / "pw"
    path.write_text(PASSPHRASE + "\n")
    settings = load_settings(environ={"OLVM_REPOSITORY_PASSWORD_FILE": str(path)})
    setup_logging("INFO", "test", secrets_of(settings))
    logging.getLogger("t").warning("opened with %s", PASSPHRASE)
    assert PASSPHRASE not in capsys.readouterr().err
