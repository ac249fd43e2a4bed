"""Garbage collection: packs that no restore point names are deleted, safely while backups run elsewhere.

The protocol (schemas/FORMAT.md, "Garbage collection"), in two phases:

1. Mark. Every manifest is read; a pack none of them names and older than the grace period is garbage. The
   list is written as `gc/condemned/<gc_id>`. From then on, a backup that starts drops condemned packs from its
   chunk index (it stores those chunks again), and every backup checks the condemned lists just before its commit
   point and fails, naming the pack, rather than commit a manifest that names one.
2. Sweep. The journals (`jobs/`) open once the list is visible are the backups that may have deduplicated
   against a condemned pack without seeing the list, and not committed yet (a journal lives from before a
   backup reads until after its manifest is written). Once each has ended, the manifests are read again
   (whatever a backup committed meanwhile names is spared), then each pack still unnamed loses its index object
   and then the pack itself. The condemned list stays as a tombstone (`swept_at`) for TOMBSTONE_DAYS, so
   services that learned a pack from an old index drop it; an older tombstone is deleted.

Every step can be killed and run again: a later run resumes an unswept list first, deletes are idempotent, and
a pack left without its index (killed between the two deletes) is garbage for the next mark. What is locked
(S3 Object Lock) is skipped and reported, never forced.
"""
from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Awaitable, Callable

from ..errors import BackupError, ObjectLocked, ObjectNotFound
from ..objectstore import ObjectStore
from . import catalog
from .chunkindex import INDEX_PREFIX, decode_index, index_key
from .packs import PackBuilder

log = logging.getLogger(__name__)

CONDEMNED_PREFIX = "gc/condemned/"
PACKS_PREFIX = "packs/"
JOBS_PREFIX = "jobs/"
TOMBSTONE_DAYS = 30
# The condemned list's format (schemas/FORMAT.md): a reader refuses another major and reads a newer minor.
GC_MAJOR = 1
GC_MINOR = 0


class GcError(BackupError):
    template = "garbage collection: {reason}"


class GcWaiting(GcError):
    """The sweep cannot start yet: backups that were running at the mark have not ended. Nothing was deleted;
    running gc again later resumes."""


@dataclass
class Condemned:
    gc_id: str
    marked_at: float
    packs: dict[str, int]           # pack key -> size in bytes
    waiting_for: list[str]          # journal keys open once the list was visible (for the admin: a sweep lists anew)
    swept_at: float | None = None
    locked: list[str] = field(default_factory=list)  # garbage, but under Object Lock: left, and said so
    repacked: list[str] = field(default_factory=list)  # condemned once their live chunks were copied

    @property
    def key(self) -> str:
        return CONDEMNED_PREFIX + self.gc_id

    def encode(self) -> bytes:
        return json.dumps({"v": [GC_MAJOR, GC_MINOR], **asdict(self)}).encode()

    @classmethod
    def decode(cls, raw: bytes, key: str) -> "Condemned":
        try:
            doc = json.loads(raw)
            if doc.get("v", [None])[0] != GC_MAJOR:
                raise GcError(f"{key}: format {doc.get('v')} is not readable by this build (major {GC_MAJOR})")
            return cls(doc["gc_id"], doc["marked_at"], dict(doc["packs"]), list(doc["waiting_for"]),
                       doc.get("swept_at"), list(doc.get("locked", [])), list(doc.get("repacked", [])))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise GcError(f"{key}: unreadable ({e})") from None


@dataclass
class GcReport:
    gc_id: str
    condemned: int = 0
    deleted: list[str] = field(default_factory=list)   # packs deleted
    freed: int = 0                                     # their bytes
    spared: list[str] = field(default_factory=list)    # condemned, then named by a backup that committed meanwhile
    locked: list[str] = field(default_factory=list)    # garbage under Object Lock: left in place
    repacked: list[str] = field(default_factory=list)  # live chunks copied out first (deleted or to be)
    dry_run: bool = False


def pack_created(pack_key: str) -> float | None:
    """When a pack was made, from its id (`<unix seconds, hex>-<random>`, repository/packs.py)."""
    try:
        return float(int(pack_key.rsplit("/", 1)[-1].split("-", 1)[0], 16))
    except ValueError:
        return None


@dataclass
class Census:
    """What the restore points need, chunk by chunk. Digests are kept as 32 raw bytes, the packs naming or holding
    a chunk as a tuple (most chunks have one), and each pack key and codec as one shared string: a census of
    200,000 chunks named by 1,000 restore points stays near 100 MiB (bench/gc.py)."""

    named: dict[bytes, tuple[str, ...]] = field(default_factory=dict)  # chunk -> packs the manifests name for it
    held: dict[str, dict[bytes, int]] = field(default_factory=dict)   # pack -> chunk -> stored length (indexes)
    where: dict[bytes, tuple[str, ...]] = field(default_factory=dict)  # chunk -> packs holding it (indexes)
    layout: dict[str, dict[bytes, tuple[int, int, str]]] = field(default_factory=dict)  # pack -> (offset, raw, codec)
    # One object per distinct pack key or codec: each manifest decodes its own copies of the same strings.
    _strings: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def _shared(self, s: str) -> str:
        return self._strings.setdefault(s, s)

    def add_manifest(self, chunks) -> None:
        for digest, loc in chunks.items():
            d = bytes.fromhex(digest)
            packs = self.named.get(d, ())
            if loc.pack_key not in packs:
                self.named[d] = packs + (self._shared(loc.pack_key),)

    def add_index(self, pack_key: str, entries) -> None:
        pack_key = self._shared(pack_key)
        held = self.held.setdefault(pack_key, {})
        layout = self.layout.setdefault(pack_key, {})
        for digest, offset, length, raw, codec in entries:
            d = bytes.fromhex(digest)
            if d not in held:
                held[d] = length
                layout[d] = (offset, raw, self._shared(codec))
                self.where[d] = self.where.get(d, ()) + (pack_key,)


@dataclass
class Homes:
    home: dict[bytes, str]     # each named chunk: the one pack kept for it
    live: dict[str, int]       # pack -> bytes of the chunks it is home to
    dangling: list[bytes]      # named chunks no surviving pack holds (damage, or a pack to spare)


def homes(census: Census, alive: set[str]) -> Homes:
    """One home per named chunk among the `alive` packs: the pack its manifest names when that one is alive
    (the lowest key, when manifests name several), else the newest pack whose index holds it (where a repack
    put it). Exactly one per chunk, so two copies are never both taken for the spare of the other."""
    out = Homes({}, {}, [])
    for digest, named in census.named.items():
        choices = sorted(p for p in named if p in alive)
        if choices:
            home = choices[0]
        else:
            others = [p for p in census.where.get(digest, ()) if p in alive]
            if not others:
                out.dangling.append(digest)
                continue
            home = max(others, key=lambda p: (pack_created(p) or 0.0, p))
        out.home[digest] = home
        out.live[home] = out.live.get(home, 0) + census.held.get(home, {}).get(digest, 0)
    return out


def garbage(packs: dict[str, int], needed: set[str], now: float, grace: float) -> dict[str, int]:
    """The packs home to no named chunk and older than `grace` seconds (a pack of unknown age is never garbage)."""
    out = {}
    for key, size in packs.items():
        created = pack_created(key)
        if key not in needed and created is not None and now - created > grace:
            out[key] = size
    return out


async def census(store: ObjectStore) -> Census:
    """Every committed restore point's chunks and every pack index. A manifest or index that cannot be read stops
    the collection: what only it names would look like garbage."""
    c = Census()
    for entry in await catalog.entries(store):
        c.add_manifest((await catalog.load(store, entry)).chunks)
    for key in await _listing(store, INDEX_PREFIX):
        try:
            pack_key, entries = decode_index(await store.get(key), key)
        except ObjectNotFound:
            continue  # deleted meanwhile (its pack is going)
        c.add_index(pack_key, entries)
    return c


async def _listing(store: ObjectStore, prefix: str) -> dict[str, int]:
    return {info.key: info.size async for info in store.list(prefix)}


async def condemned_lists(store: ObjectStore) -> list[Condemned]:
    return [Condemned.decode(await store.get(key), key) for key in await _listing(store, CONDEMNED_PREFIX)]


async def condemned_packs(store: ObjectStore) -> set[str]:
    """Every pack a collection has condemned or deleted (tombstones included): not to be deduplicated against,
    nor named by a manifest."""
    return {pack for c in await condemned_lists(store) for pack in c.packs}


class CondemnedCache:
    """condemned_packs for a service that asks before every task: one listing each time, and only the lists not
    swept yet read again (a tombstone no longer changes)."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._swept: dict[str, frozenset[str]] = {}

    async def packs(self) -> set[str]:
        keys = list(await _listing(self.store, CONDEMNED_PREFIX))
        out: set[str] = set()
        for key in keys:
            if key not in self._swept:
                try:
                    c = Condemned.decode(await self.store.get(key), key)
                except ObjectNotFound:
                    continue  # a tombstone past its time, deleted since the listing
                if c.swept_at is None:
                    out.update(c.packs)
                    continue
                self._swept[key] = frozenset(c.packs)
            out |= self._swept[key]
        for key in set(self._swept) - set(keys):
            del self._swept[key]
        return out


async def _repack(store: ObjectStore, census_: Census, found: Homes, packs: list[str], gc_id: str) -> None:
    """Copy the chunks `packs` are home to into new packs (as stored: sealed chunks stay sealed, bound to their
    name, not their pack), each sealed with its index before anything is condemned: a run killed here leaves
    copies, which the next collection finds to be garbage."""
    log.info("gc %s: repacking %d pack(s)", gc_id, len(packs))
    builder = PackBuilder(store)
    for pack in packs:
        wanted = sorted(((d, off, census_.held[pack][d]) for d, off in _offsets(census_, pack, found)),
                        key=lambda x: x[1])
        if not wanted:
            continue
        start, end = wanted[0][1], max(off + length for _, off, length in wanted)
        blob = await store.get(pack, start, end - start)
        for digest, off, length in wanted:
            _off, raw, codec = census_.layout[pack][digest]
            await builder.add(digest.hex(), codec, raw, blob[off - start:off - start + length])
            if builder.full:
                await builder.seal()
    if not builder.empty:
        await builder.seal()
    log.info("gc %s: repacked %d pack(s)", gc_id, len(packs))


def _offsets(census_: Census, pack: str, found: Homes):
    for digest, (offset, _raw, _codec) in census_.layout.get(pack, {}).items():
        if found.home.get(digest) == pack:
            yield digest, offset


async def mark(store: ObjectStore, *, grace: float, now: float | None = None, dry_run: bool = False,
               repack_below: float = 0.0) -> Condemned:
    """Condemn the packs no named chunk has for home; with `repack_below` (a fraction), also the packs whose
    live chunks fill less than that of them, once those chunks are copied into new packs."""
    now = time.time() if now is None else now
    packs = await _listing(store, PACKS_PREFIX)
    census_ = await census(store)
    already = await condemned_packs(store)
    found = homes(census_, set(packs) - already)
    if found.dangling:
        raise GcError(f"{len(found.dangling)} chunk(s) restore points name are in no pack at all (e.g. "
                      f"{found.dangling[0].hex()}): run `olvm-backup verify`; nothing is collected until that is "
                      "understood")
    doomed = {k: v for k, v in garbage(packs, set(found.live), now, grace).items() if k not in already}
    sparse = [] if not repack_below else sorted(
        k for k, live in found.live.items() if k in packs and k not in already and packs[k]
        and live / packs[k] < repack_below and now - (pack_created(k) or now) > grace)
    gc_id = f"{int(now):x}-{secrets.token_hex(4)}"
    if sparse and not dry_run:
        await _repack(store, census_, found, sparse, gc_id)
    doomed.update({k: packs[k] for k in sparse})
    condemned = Condemned(gc_id, now, doomed, [], repacked=sparse)
    if doomed and not dry_run:
        await store.put(condemned.key, condemned.encode())
    log.info("gc %s: %d of %d packs condemned (%d bytes, %d repacked)", gc_id, len(doomed), len(packs),
             sum(doomed.values()), len(sparse))
    return condemned


async def wait_for_journals(store: ObjectStore, condemned: Condemned, *, timeout: float, poll: float = 2.0,
                            sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
    """Until every backup running now, with the list visible, has ended (see the module's docstring)."""
    journals = sorted(await _listing(store, JOBS_PREFIX))
    if journals != condemned.waiting_for:
        condemned.waiting_for = journals
        await store.put(condemned.key, condemned.encode())  # what it waits for, for the admin who looks
    deadline = time.monotonic() + timeout
    while True:
        open_now = set(await _listing(store, JOBS_PREFIX))
        left = [j for j in journals if j in open_now]
        if not left:
            return
        if time.monotonic() >= deadline:
            raise GcWaiting(f"{len(left)} backup(s) running since the mark have not ended "
                            f"({', '.join(j[len(JOBS_PREFIX):].removesuffix('.json') for j in left[:5])}); "
                            "nothing was deleted: run gc again once they have")
        await sleep(poll)


async def sweep(store: ObjectStore, condemned: Condemned, *, wait: float, report: GcReport) -> None:
    await wait_for_journals(store, condemned, timeout=wait)
    # What backups running at the mark committed since: a chunk they name that only a condemned pack holds
    # spares that pack.
    packs = await _listing(store, PACKS_PREFIX)
    census_ = await census(store)
    found = homes(census_, set(packs) - await condemned_packs(store))
    needed = {p for d in found.dangling for p in census_.named[d] + census_.where.get(d, ())}
    log.info("gc %s: deleting up to %d pack(s)", condemned.gc_id, len(condemned.packs))
    for pack, size in sorted(condemned.packs.items()):
        if pack in needed:
            report.spared.append(pack)
            continue
        try:
            await store.delete(index_key(pack.rsplit("/", 1)[-1]))  # first: nobody learns the pack again
            await store.delete(pack)
        except ObjectLocked as e:
            log.warning("gc %s: %s", condemned.gc_id, e)
            report.locked.append(pack)
            continue
        except ObjectNotFound:
            pass  # deleted by a run that was killed
        report.deleted.append(pack)
        report.freed += size
    condemned.packs = {p: s for p, s in condemned.packs.items() if p not in report.spared}
    condemned.locked = report.locked
    condemned.swept_at = time.time()
    await store.put(condemned.key, condemned.encode())  # now a tombstone


async def collect(store: ObjectStore, *, grace: float, wait: float, dry_run: bool = False,
                  now: float | None = None, repack_below: float = 0.0) -> list[GcReport]:
    """Finish what earlier (killed) runs marked, then mark and sweep anew; tombstones past their time go."""
    reports = []
    now = time.time() if now is None else now
    for c in await condemned_lists(store):
        if c.swept_at is None and not dry_run:
            log.info("gc %s: resuming (marked %s)", c.gc_id, time.strftime("%F %T", time.gmtime(c.marked_at)))
            report = GcReport(c.gc_id, condemned=len(c.packs))
            await sweep(store, c, wait=wait, report=report)
            reports.append(report)
        elif c.swept_at is not None and now - c.swept_at > TOMBSTONE_DAYS * 86400 and not dry_run:
            await store.delete(c.key)
    condemned = await mark(store, grace=grace, now=now, dry_run=dry_run, repack_below=repack_below)
    report = GcReport(condemned.gc_id, condemned=len(condemned.packs), dry_run=dry_run,
                      repacked=list(condemned.repacked))
    if condemned.packs and not dry_run:
        await sweep(store, condemned, wait=wait, report=report)
    elif dry_run:
        report.deleted, report.freed = sorted(condemned.packs), sum(condemned.packs.values())
    reports.append(report)
    return reports


async def orphan_indexes(store: ObjectStore) -> list[str]:
    """Index objects whose pack is gone (nothing deletes a pack before its index: only a foreign hand)."""
    packs = {k.rsplit("/", 1)[-1] for k in await _listing(store, PACKS_PREFIX)}
    return [k for k in await _listing(store, INDEX_PREFIX) if k[len(INDEX_PREFIX):] not in packs]
