"""The API's local users: `<data dir>/api/users.json` (mode 0600), each a name, a role and a scrypt hash of the
password. Managed by `olvm-backup user add|remove|list|passwd`, read by services/api at each login.

A hash is `scrypt$N$r$p$SALT$KEY` (base64 salt and key), so the cost can be raised later without breaking the
stored ones. Passwords are never stored, logged or compared in clear; a login for a user that does not exist costs
the same scrypt as one that does (no timing answer to "is this a user?").
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from .errors import BackupError

ROLES = ("admin", "operator")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
NAME_RULE = "1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
MIN_PASSWORD = 8
FORMAT = 1
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1  # ~16 MiB and ~50 ms a login here: slow for guessing, fine for people


class UserError(BackupError):
    template = "user {user}: {reason}"

    def __init__(self, reason: str, *, user: str, field: str = "") -> None:
        super().__init__(reason, user=user)
        self.user = user
        self.field = field


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str

    def stamp(self) -> str:
        """Changes when the user's password or role does: what a session checks it still matches."""
        return hashlib.sha256(f"{self.role}${self.password_hash}".encode()).hexdigest()[:32]


def users_file(data_dir: Path) -> Path:
    return data_dir / "api" / "users.json"


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=128 * n * r * 2, dklen=32)
    return f"scrypt${n}${r}${p}${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, key = stored.split("$")
        if kind != "scrypt":
            return False
        n_, r_, p_ = int(n), int(r), int(p)
        want = base64.b64decode(key)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=n_, r=r_, p=p_,
                             maxmem=128 * n_ * r_ * 2, dklen=len(want))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


_DUMMY = hash_password(secrets.token_urlsafe(16))  # checked for unknown users: the same cost as a real check


def check_name(name: str) -> str:
    if not NAME.fullmatch(name or ""):
        raise UserError(f"not a valid user name ({NAME_RULE})", user=name or "?", field="username")
    return name


def check_role(role: str, name: str) -> str:
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}, not {role!r}", user=name, field="role")
    return role


def check_new_password(password: str, name: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"a password needs at least {MIN_PASSWORD} characters", user=name, field="password")
    return password


class Users:
    """The users file: read fresh at each call (the CLI changes it while the API runs), written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, User]:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError as e:
            raise BackupError(f"{self.path} is not JSON: {e}") from None
        if doc.get("v") != FORMAT:
            raise BackupError(f"{self.path}: format {doc.get('v')!r}, this version reads {FORMAT}")
        return {name: User(name, u["role"], u["password_hash"]) for name, u in doc.get("users", {}).items()}

    def _save(self, users: dict[str, User]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        doc = {"v": FORMAT, "users": {u.name: {"role": u.role, "password_hash": u.password_hash}
                                      for u in sorted(users.values(), key=lambda u: u.name)}}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1)
        tmp.replace(self.path)

    def add(self, name: str, role: str, password: str) -> User:
        check_name(name)
        check_role(role, name)
        check_new_password(password, name)
        users = self.load()
        if name in users:
            raise UserError("exists already (`olvm-backup user passwd` changes its password)", user=name,
                            field="username")
        users[name] = User(name, role, hash_password(password))
        self._save(users)
        return users[name]

    def remove(self, name: str) -> None:
        users = self.load()
        if name not in users:
            raise UserError("no such user", user=name, field="username")
        del users[name]
        self._save(users)

    def set_password(self, name: str, password: str, role: str | None = None) -> User:
        check_new_password(password, name)
        users = self.load()
        if name not in users:
            raise UserError("no such user", user=name, field="username")
        user = users[name]
        users[name] = User(name, check_role(role, name) if role else user.role, hash_password(password))
        self._save(users)
        return users[name]

    def authenticate(self, name: str, password: str) -> User | None:
        """The user when the password is theirs; None otherwise (unknown user included, at the same cost)."""
        user = self.load().get(name)
        if user is None:
            check_password(password, _DUMMY)
            return None
        return user if check_password(password, user.password_hash) else None


def generate_first_admin(data_dir: Path, name: str = "admin") -> Path | None:
    """`olvm-backup up` on a data dir with no API user: an admin with a generated password, written to a 0600 file
    whose path is printed (as the repository passphrase is). None when there are users already."""
    users = Users(users_file(data_dir))
    if users.load():
        return None
    password = secrets.token_urlsafe(18)
    path = data_dir / "api" / f"{name}.password"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a file left there keeps its mode through O_CREAT: made private before it is written
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    users.add(name, "admin", password)
    return path
