"""`olvm-backup init` and `olvm-backup key ...`: the repository's encryption and the keys that open it.

A passphrase is read from a file or typed (twice, not echoed), never taken as an argument: arguments show in `ps`
and shell history. The configured one (OLVM_REPOSITORY_PASSWORD_FILE, _PASSWORD or _KEY_FILE) proves who asks.
"""
from __future__ import annotations

import getpass
import os
import sys
import time

from ..config import Settings
from ..crypto import keys
from ..crypto.keys import KEY_FILE, PASSPHRASE
from ..crypto.sealing import CIPHER
from ..errors import BackupError
from ..objectstore import open_store
from ..repository import keyring
from ..secret import read_secret_file

LOSS = ("keep the passphrase (or key file) safe, and another key away from this machine (`olvm-backup key add`): "
        "whoever loses every passphrase and key file of this repository loses every backup in it; nobody can "
        "recover them")


def _slot_line(slot: dict) -> str:
    return f"{slot['id']} ({slot['kind']}{', ' + slot['label'] if slot.get('label') else ''})"


async def init(settings: Settings, *, encrypt: bool, label: str) -> int:
    async with open_store(settings.s3) as store:
        sealer = await keyring.init_repository(store, settings.repository, encrypt=encrypt, label=label)
        slots = await keyring.list_slots(store)
    where = f"bucket {settings.s3.bucket}"
    if not sealer.encrypted:
        print(f"repository initialised in {where}: NOT encrypted (anyone who reads the bucket reads the backups)")
        return 0
    print(f"repository initialised in {where}: encrypted ({CIPHER}), "
          f"key {', '.join(_slot_line(s) for s in slots)}")
    if sealer.legacy:
        print(f"{len(sealer.legacy)} object(s) written before encryption stay readable, recorded as they are")
    print(LOSS)
    return 0


def _read_new_passphrase(path: str | None) -> bytes:
    if path:
        try:
            text = read_secret_file(path).reveal()
        except (OSError, UnicodeDecodeError) as e:
            reason = getattr(e, "strerror", None) or e
            raise BackupError(f"cannot read the new passphrase from {path}: {reason}") from None
        if not text:
            raise BackupError(f"the first line of {path} is empty: it holds no passphrase")
        return keys.passphrase_bytes(text)
    if not sys.stdin.isatty():
        raise BackupError("no new passphrase: give --new-password-file FILE (or --new-key-file FILE), or run this "
                          "in a terminal to type it")
    first = getpass.getpass("new passphrase: ")
    if getpass.getpass("new passphrase again: ") != first:
        raise BackupError("the two passphrases typed differ; nothing changed")
    return keys.passphrase_bytes(first)


def _new_secret(args) -> tuple[bytes, str]:
    if args.new_key_file:
        return keyring.read_key_file(args.new_key_file, "--new-key-file").value, KEY_FILE
    return _read_new_passphrase(args.new_password_file), PASSPHRASE


async def list_keys(settings: Settings) -> int:
    async with open_store(settings.s3) as store:
        config = await keyring.read_config(store)
        if config is None:
            raise keyring.RepositoryNotInitialised(settings.s3.bucket)
        if config["encryption"] == "none":
            print(f"the repository in bucket {settings.s3.bucket} is not encrypted: it has no keys")
            return 0
        slots = await keyring.list_slots(store)
        opened = await keyring.opened_slots(store, settings.repository)
    print(f"  {'id':<16}  {'kind':<10}  {'label':<16}  {'created':<16}  created by")
    for s in slots:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(s.get("created_at", 0)))
        mark = "*" if s["id"] in opened else " "
        print(f"{mark} {s['id']:<16}  {s['kind']:<10}  {s.get('label', ''):<16}  {created:<16}  "
              f"{s.get('created_by', '')}")
    if opened:
        print("* opens with the configured passphrase or key file")
    else:
        print(f"the configured passphrase or key file opens none of these ({keyring.SECRET_SETTINGS})")
    return 0


async def add_key(settings: Settings, args) -> int:
    secret, kind = _new_secret(args)
    async with open_store(settings.s3) as store:
        slot = await keyring.add_slot(store, settings.repository, secret, kind, args.label or "")
    print(f"key {_slot_line(slot)} added: it opens the repository as the others do")
    return 0


async def remove_key(settings: Settings, args) -> int:
    async with open_store(settings.s3) as store:
        await keyring.remove_slot(store, settings.repository, args.id, force=args.force)
    print(f"key {args.id} removed: its passphrase or key file no longer opens the repository")
    return 0


async def change_passphrase(settings: Settings, args) -> int:
    secret = _read_new_passphrase(args.new_password_file)
    async with open_store(settings.s3) as store:
        slot = await keyring.change_passphrase(store, settings.repository, secret)
    print(f"passphrase changed: key {_slot_line(slot)} replaces the old one, which no longer opens the repository; "
          "set OLVM_REPOSITORY_PASSWORD_FILE (or _PASSWORD) to the new passphrase wherever services run")
    return 0


def generate_file(path: str) -> int:
    """A key file of KEY_FILE_MIN random bytes, readable by its owner only; an existing file is never replaced."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise BackupError(f"{path} exists: a key file is never overwritten (it may be the one that opens "
                          "backups)") from None
    with os.fdopen(fd, "wb") as f:
        f.write(os.urandom(keys.KEY_FILE_MIN))
    print(f"key file {path} written (mode 0600): add it with `olvm-backup key add --new-key-file {path}`; {LOSS}")
    return 0
