"""The login rules in themselves (no process): password hashes, sessions that expire and end, wrong passwords
that lock a name or an address out for a while."""
from __future__ import annotations

import stat

import pytest

from olvm_backup.stack.certificate import self_signed
from olvm_backup.users import UserError, Users, check_password, generate_first_admin, hash_password, users_file
from services.api.ratelimit import NAME_FACTOR, LoginLimiter
from services.api.sessions import Sessions


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_users_file_keeps_scrypt_hashes_only_and_is_private(tmp_path):
    users = Users(tmp_path / "api" / "users.json")
    users.add("alice", "operator", "correct horse")
    text = users.path.read_text()
    assert "correct horse" not in text and "scrypt$" in text
    assert stat.S_IMODE(users.path.stat().st_mode) == 0o600
    assert users.authenticate("alice", "correct horse").role == "operator"
    assert users.authenticate("alice", "wrong horse") is None
    assert users.authenticate("bob", "correct horse") is None
    before = users.load()["alice"].stamp()
    users.set_password("alice", "battery staple", role="admin")
    assert users.load()["alice"].stamp() != before and users.load()["alice"].role == "admin"
    with pytest.raises(UserError, match="exists already"):
        users.add("alice", "admin", "whatever-long")
    with pytest.raises(UserError, match="at least 8"):
        users.add("carol", "admin", "short")
    with pytest.raises(UserError, match="role must be"):
        users.add("carol", "root", "long enough")
    users.remove("alice")
    assert users.load() == {}


def test_a_hash_is_salted_and_checked_in_constant_form():
    a, b = hash_password("same"), hash_password("same")
    assert a != b and check_password("same", a) and check_password("same", b)
    assert not check_password("other", a) and not check_password("same", "md5$x")


def test_sessions_expire_and_end():
    clock = Clock()
    sessions = Sessions(ttl=60, clock=clock)
    token, session = sessions.open("alice", "admin")
    assert sessions.get(token) == session and session.csrf and session.csrf != token
    clock.now += 59
    assert sessions.get(token) is not None
    clock.now += 2
    assert sessions.get(token) is None
    token, _ = sessions.open("alice", "admin")
    other, _ = sessions.open("bob", "operator")
    sessions.close_user("alice")
    assert sessions.get(token) is None and sessions.get(other) is not None
    sessions.close(other)
    assert sessions.get(other) is None


def test_wrong_passwords_lock_a_name_at_an_address_and_the_address_out_for_a_while():
    clock = Clock()
    limiter = LoginLimiter(attempts=3, lockout=30, clock=clock)
    for _ in range(2):
        limiter.failed("alice", "10.0.0.1")
    assert limiter.retry_after("alice", "10.0.0.2") == 0
    limiter.failed("ALICE", "10.0.0.1")  # the same name, whatever its case
    assert limiter.retry_after("Alice", "10.0.0.1") == 30
    assert limiter.retry_after("bob", "10.0.0.1") == 30    # the address, for any name
    assert limiter.retry_after("alice", "10.0.0.9") == 0   # a stranger's guesses do not lock alice out elsewhere
    clock.now += 31
    assert limiter.retry_after("alice", "10.0.0.1") == 0
    limiter.failed("alice", "10.0.0.1")
    limiter.succeeded("alice", "10.0.0.1")  # a success forgets the failures before it
    limiter.failed("alice", "10.0.0.1")
    limiter.failed("alice", "10.0.0.1")
    assert limiter.retry_after("alice", "10.0.0.1") == 0


def test_a_name_guessed_from_many_addresses_is_locked_out_everywhere():
    clock = Clock()
    limiter = LoginLimiter(attempts=3, lockout=30, clock=clock)
    for i in range(NAME_FACTOR * 3 - 1):  # two wrong passwords from each address: none of them locked out
        limiter.failed("admin", f"10.0.{i // 2}.1")
    assert limiter.retry_after("admin", "10.9.9.9") == 0
    limiter.failed("Admin", "10.9.9.8")
    assert limiter.retry_after("admin", "10.9.9.9") == 30
    clock.now += 31
    assert limiter.retry_after("admin", "10.9.9.9") == 0
    for i in range(NAME_FACTOR * 3 - 1):  # as many, spread wider than the lockout: no lock
        clock.now += 2
        limiter.failed("admin", f"10.1.{i}.1")
    assert limiter.retry_after("admin", "10.9.9.9") == 0


def test_a_login_counts_as_wrong_from_its_start():
    clock = Clock()
    limiter = LoginLimiter(attempts=3, lockout=30, clock=clock)
    assert [limiter.begin("admin", "10.0.0.1") for _ in range(4)] == [0, 0, 0, 30]  # three at once, the fourth waits
    clock.now += 31
    assert limiter.begin("admin", "10.0.0.1") == 0
    limiter.succeeded("admin", "10.0.0.1")  # the password was right: not counted
    assert [limiter.begin("admin", "10.0.0.1") for _ in range(3)] == [0, 0, 0]


def test_the_generated_secrets_are_private_even_over_an_old_file(tmp_path):
    (tmp_path / "api").mkdir()
    for name in ("admin.password", "tls.key"):  # left there readable by all (a copy, a restored backup)
        (tmp_path / "api" / name).write_text("old\n")
        (tmp_path / "api" / name).chmod(0o644)
    password = generate_first_admin(tmp_path)
    _, key = self_signed(tmp_path / "api", ["127.0.0.1"])
    for path in (password, key, users_file(tmp_path)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert path.read_text() != "old\n"
