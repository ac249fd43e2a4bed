"""Key slots: a passphrase or a key file opens the master key, nothing else does, and a slot moved or of another
format is refused by name."""
from __future__ import annotations

import json
import os

import pytest

from olvm_backup.crypto import keys
from olvm_backup.crypto.keys import KEY_FILE, PASSPHRASE, SlotError, WrongKey, make_slot, unwrap
from olvm_backup.crypto.sealing import RepoKey

FAST = {"n": 2 ** 12}  # tests only: the product's default is SCRYPT_N


def test_a_passphrase_slot_opens_with_its_passphrase_only():
    key = RepoKey.generate()
    slot = make_slot(key, b"correct horse battery", PASSPHRASE, "ops", **FAST)
    opened = unwrap(json.loads(json.dumps(slot)), b"correct horse battery")
    assert opened == key and opened.repo_id == key.repo_id
    with pytest.raises(WrongKey, match=r"^the passphrase \(or key file\) opens no key of this repository$"):
        unwrap(slot, b"correct horse battery!")
    assert slot["kdf"] == {"name": "scrypt", "n": 2 ** 12, "r": 8, "p": 1, "salt": slot["kdf"]["salt"]}
    assert slot["v"] == [keys.SLOT_MAJOR, keys.SLOT_MINOR] and len(slot["id"]) == 16
    assert slot["label"] == "ops" and "@" in slot["created_by"]


def test_a_key_file_slot_opens_with_its_bytes_only():
    key, secret = RepoKey.generate(), os.urandom(32)
    slot = make_slot(key, secret, KEY_FILE)
    assert unwrap(slot, secret) == key
    with pytest.raises(WrongKey):
        unwrap(slot, os.urandom(32))
    assert slot["kdf"]["name"] == "hkdf-sha256"


def test_the_wrapped_key_and_the_secret_never_appear_in_the_slot():
    key = RepoKey.generate()
    text = json.dumps(make_slot(key, b"a passphrase nobody sees", PASSPHRASE, **FAST))
    assert "a passphrase nobody sees" not in text
    for raw in (key.data_key, key.chunk_key):
        assert raw.hex() not in text and raw not in text.encode()


def test_the_default_cost_is_memory_hard(monkeypatch):
    assert keys.SCRYPT_N == 2 ** 17 and 128 * keys.SCRYPT_N * keys.SCRYPT_R == 128 << 20
    monkeypatch.setattr(keys, "SCRYPT_N", 2 ** 11)  # read when the slot is made, so tests can lower it
    assert make_slot(RepoKey.generate(), b"12345678", PASSPHRASE)["kdf"]["n"] == 2 ** 11


@pytest.mark.parametrize("edit", [
    lambda s: s.update(repo_id="another-repository"),   # copied into another repository
    lambda s: s.update(id="0123456789abcdef"),           # renamed
    lambda s: s["kdf"].update(n=2 ** 13),                # weakened
])
def test_a_slot_moved_or_edited_does_not_open(edit):
    slot = make_slot(RepoKey.generate(), b"correct horse battery", PASSPHRASE, **FAST)
    edit(slot)
    with pytest.raises(WrongKey):
        unwrap(slot, b"correct horse battery")


def test_a_slot_of_another_major_is_refused_naming_it():
    slot = make_slot(RepoKey.generate(), b"correct horse battery", PASSPHRASE, **FAST)
    slot["v"] = [2, 0]
    with pytest.raises(SlotError, match=rf"key slot {slot['id']}: format \[2, 0\] is not readable by this build "
                                        r"\(major 1\)"):
        unwrap(slot, b"correct horse battery")
    slot["v"] = [1, 9]  # a newer minor only adds: read
    assert unwrap(slot, b"correct horse battery").repo_id == slot["repo_id"]


def test_a_planted_slot_cannot_ask_for_all_memory():
    slot = make_slot(RepoKey.generate(), b"correct horse battery", PASSPHRASE, **FAST)
    slot["kdf"]["n"] = 2 ** 24
    with pytest.raises(SlotError, match="out of bounds"):
        unwrap(slot, b"correct horse battery")


@pytest.mark.parametrize("kind, secret, message", [
    (PASSPHRASE, b"short", "fewer than 8 characters"),
    (KEY_FILE, b"x" * 31, "at least 32 random bytes, not 31"),
    ("token", b"x" * 32, "kind must be one of"),
])
def test_weak_or_unknown_secrets_make_no_slot(kind, secret, message):
    with pytest.raises(SlotError, match=message):
        make_slot(RepoKey.generate(), secret, kind, **FAST)


def test_the_same_words_typed_in_another_normal_form_open():
    composed, decomposed = "caf\u00e9 au lait", "cafe\u0301 au lait"
    key = RepoKey.generate()
    slot = make_slot(key, keys.passphrase_bytes(composed), PASSPHRASE, **FAST)
    assert unwrap(slot, keys.passphrase_bytes(decomposed)) == key
