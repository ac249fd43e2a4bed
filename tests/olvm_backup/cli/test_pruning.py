"""`olvm-backup prune`, `protect`, `unprotect` and `gc` as an operator runs them, in process, against moto (an
encrypted repository of five restore points of vm1, a day apart) with the bus in memory: the dry run shows KEEP
with every reason and REMOVE and deletes nothing; prune removes what the rules no longer keep and publishes each
removal with its rule; rules come from a policy's retention; protection keeps a restore point; gc deletes what only
removed restore points used, or waits for running backups (exit 3)."""
from __future__ import annotations

import asyncio
import json

import pytest

from olvm_backup.cli.main import main
from olvm_backup.config import RepositorySettings, Settings, to_environ
from olvm_backup.format.chunks import ChunkCodec
from olvm_backup.objectstore import open_store
from olvm_backup.policy.model import Policy, policy_to_doc
from olvm_backup.policy.store import policy_key
from olvm_backup.repository import catalog, holds, keyring
from olvm_backup.repository.sealedstore import sealed
from olvm_backup.retention import Rules
from olvm_backup.secret import Secret
from schemas import decode
from schemas.topics import REPOSITORY_EVENTS
from tests.cli_env import olvm_environ
from tests.olvm_backup.repository.test_gc import Repo
from tests.olvm_backup.repository.test_prune import five
from tests.twins import MemoryBus


def published(bus: MemoryBus) -> list:
    return [decode(s.value) for s in bus.published[REPOSITORY_EVENTS.full_name(bus.prefix)]]


@pytest.fixture
def repo(monkeypatch, tmp_path, s3_settings) -> Settings:
    """Five restore points of vm1 (b0 oldest .. b4 newest) in an encrypted repository, the CLI pointed at it."""
    settings = Settings(data_dir=tmp_path, s3=s3_settings,
                        repository=RepositorySettings(password=Secret("a passphrase for these tests")))

    async def make() -> None:
        async with open_store(settings.s3) as store:
            r = Repo()
            r.sealer = await keyring.init_repository(store, settings.repository, n=2 ** 12)
            r.raw, r.store, r.codec = store, sealed(store, r.sealer), ChunkCodec.for_writing(r.sealer)
            await five(r)
            await r.store.put(policy_key("gold"), json.dumps(policy_to_doc(Policy(
                name="gold", vms=["vm1"], retention=Rules(last=2)))).encode())
    asyncio.run(make())
    olvm_environ(monkeypatch, to_environ(settings))
    return settings


def run(settings: Settings, coro_of):
    async def go():
        async with open_store(settings.s3) as store:
            return await coro_of(store)
    return asyncio.run(go())


def listed(settings: Settings) -> list[str]:
    return run(settings, lambda store: _ids(store))


async def _ids(store) -> list[str]:
    return sorted(e.backup_id for e in await catalog.entries(store))


def lines_of(out: str) -> dict[str, str]:
    """backup id -> its line in prune's listing."""
    return {line.split()[1]: line.strip() for line in out.splitlines() if line.startswith("  ")}


def test_prune_refuses_without_rules(repo, bus, capsys):
    assert main(["prune"]) == 1
    assert "say which restore points to keep" in capsys.readouterr().err
    assert main(["prune", "--policy", "gold", "--keep-last", "1"]) == 1
    assert "give no --keep-* with it" in capsys.readouterr().err
    assert listed(repo) == ["b0", "b1", "b2", "b3", "b4"]


def test_prune_dry_run_shows_keep_with_reasons_and_remove_and_deletes_nothing(repo, bus, capsys):
    assert main(["prune", "--vm", "vm1", "--keep-last", "3", "--keep-within", "36h", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "vm1 (vm1): keep-last 3, keep-within 1d12h" not in out  # format_duration says 36h
    assert "vm1 (vm1): keep-last 3, keep-within 36h" in out, out
    lines = lines_of(out)
    assert list(lines) == ["b4", "b3", "b2", "b1", "b0"]  # newest first
    assert lines["b4"].startswith("KEEP") and "newest (the base of the next incremental), keep-last, keep-within 36h" \
        in lines["b4"]
    assert lines["b3"].startswith("KEEP") and lines["b3"].endswith("keep-last, keep-within 36h")
    assert lines["b2"].startswith("KEEP") and lines["b2"].endswith("keep-last")
    assert lines["b1"].startswith("REMOVE") and lines["b0"].startswith("REMOVE")
    assert "2 restore point(s) would be removed" in out
    assert listed(repo) == ["b0", "b1", "b2", "b3", "b4"] and published(bus) == []


def test_prune_removes_what_the_rules_no_longer_keep_and_publishes_each_removal(repo, bus, capsys):
    assert main(["prune", "--keep-last", "3"]) == 0
    out = capsys.readouterr().out
    assert "removed b0 of vm1" in out and "removed b1 of vm1" in out and "removed 2 restore point(s)" in out
    assert listed(repo) == ["b2", "b3", "b4"]
    events = published(bus)
    assert [(e.action, e.backup_id, e.vm, e.reason, e.actor) for e in events] == [
        ("pruned", "b0", "vm1", "keep-last 3", "alice@host"), ("pruned", "b1", "vm1", "keep-last 3", "alice@host")]
    for backup_id in ("b2", "b3", "b4"):
        assert main(["verify", backup_id]) == 0
    assert run(repo, lambda store: holds.in_use_ids(store)) == set()  # verify's holds are gone


def test_prune_by_policy_uses_its_retention(repo, bus, capsys):
    assert main(["prune", "--policy", "gold"]) == 0
    assert "vm1 (vm1): keep-last 2" in capsys.readouterr().out
    assert listed(repo) == ["b3", "b4"]
    assert {e.detail["policy"] for e in published(bus)} == {"gold"}


def test_a_protected_restore_point_is_kept_until_unprotected(repo, bus, capsys):
    assert main(["protect", "b0", "--note", "before the upgrade"]) == 0
    assert "protected restore point b0 of vm1" in capsys.readouterr().out
    assert main(["protect", "nope"]) == 1
    assert "no restore point nope" in capsys.readouterr().err
    assert main(["prune", "--keep-last", "1", "--dry-run"]) == 0
    lines = lines_of(capsys.readouterr().out)
    assert lines["b0"].startswith("KEEP") and lines["b0"].endswith("protected")
    assert main(["unprotect", "b0"]) == 0
    assert "no longer protected" in capsys.readouterr().out
    assert main(["unprotect", "b0"]) == 0
    assert "is not protected" in capsys.readouterr().out
    assert main(["prune", "--keep-last", "1"]) == 0
    assert listed(repo) == ["b4"]
    events = published(bus)
    assert [(e.action, e.backup_id) for e in events][:2] == [("protected", "b0"), ("unprotected", "b0")]
    assert events[0].detail["note"] == "before the upgrade" and events[0].actor == "alice@host"


def test_gc_after_prune_deletes_what_only_the_removed_points_used_and_waits_for_running_backups(repo, bus, capsys):
    async def named(store):
        s = sealed(store, await keyring.open_repository(store, repo.repository))
        return {loc.pack_key for m in await catalog.list_manifests(s) for loc in m.chunks.values()}
    before = run(repo, named)
    assert main(["prune", "--keep-last", "3"]) == 0
    gone = before - run(repo, named)
    assert gone
    capsys.readouterr()
    assert main(["gc", "--grace", "0m", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert {line.split()[2] for line in out.splitlines() if line.startswith("would delete packs/")} == gone
    assert published(bus)[-1].action == "pruned"  # a dry run publishes nothing

    # A backup running elsewhere: the sweep waits for it, then gives up saying so (exit 3), deleting nothing.
    run(repo, lambda store: store.put("jobs/b9.json", b"{}"))
    assert main(["gc", "--grace", "0m", "--wait", "0m"]) == 3
    assert "1 backup(s) running since the mark have not ended" in capsys.readouterr().out
    packs = run(repo, lambda store: _packs(store))
    assert gone <= packs
    run(repo, lambda store: store.delete("jobs/b9.json"))
    assert main(["gc", "--grace", "0m", "--wait", "0m"]) == 0
    out = capsys.readouterr().out
    assert {line.split()[1] for line in out.splitlines() if line.startswith("deleted packs/")} == gone
    assert f"deleted {len(gone)} pack(s)" in out
    assert run(repo, lambda store: _packs(store)) == packs - gone
    events = [e for e in published(bus) if e.action in ("pack_deleted", "gc")]
    assert {e.detail["pack"] for e in events if e.action == "pack_deleted"} == gone
    assert all("no restore point names it" in e.reason for e in events if e.action == "pack_deleted")
    # One summary per collection: the list marked by the run that waited, resumed and swept, then a fresh mark.
    assert [e.detail["deleted"] for e in events if e.action == "gc"] == [len(gone), 0]
    for backup_id in ("b2", "b3", "b4"):
        assert main(["verify", backup_id]) == 0


async def _packs(store) -> set[str]:
    return {i.key async for i in store.list("packs/")}
