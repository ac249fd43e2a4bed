"""Scale benchmark (not a test): cost follows the data, not the disk (issue 26).

    .venv/bin/python bench/scale.py [--work DIR] [--readers N] [--giant SIZE] [--small SIZE] [--data SIZE]
                                    [--pieces N] [--keep]
    .venv/bin/python bench/scale.py --chain [--work DIR] [--chain-disk SIZE] [--chain-data SIZE]
                                    [--incrementals N] [--keep]
    .venv/bin/python bench/scale.py --slow-links [--work DIR] [--link-disk SIZE] [--link-data SIZE] [--pieces N]
                                    [--latency-ms MS] [--latency-first] [--keep]

Thin giants: the simulator serves two VMs whose disks hold the same amount of data in as many pieces, spread evenly
over the disk (not one run): `giant` with a thin qcow2 disk of --giant (default 8TiB) and `small` with one of --small
(default 4GiB), each --data (default 1.5GiB) in --pieces (default 384) pieces of random data (seeds of their own, so
neither dedups against the other). Printed, all measured in this run:
- a full backup of each (each into a new repository, the stack restarted untimed): seconds, and the giant's over the
  small's against the target 1.5x; where the time went (the backup's steps: engine start, open transfers, extents,
  read and store, engine release, commit);
- imageio's extent queries of the giant (the "extents" step) against the transfers' inactivity timeout;
- the services' peak RSS (target: every service under 300 MiB; the broker and the object store are not ours);
- an incremental of the giant after the guest changed 1 % of its data (1 MiB writes inside the data, spread):
  bytes read from imageio against bytes changed (target: only what changed, + 2 MiB of bitmap granularity).
Quick run: --giant 1TiB --data 96MiB --pieces 48.

Chain depth (--chain, instead of the thin giants): a VM whose thin qcow2 disk of --chain-disk (default 4GiB) holds
--chain-data (default 2GiB) of random data, backed up full and then --incrementals (default 30) times, the guest
changing 1 % of the data before each (1 MiB writes, never the same place twice). Restored as a new VM (the whole
job: VM, disk, upload, attach): the first restore point, then the newest. Printed: seconds, the restorer's GETs and
bytes read from the store for each, the newest's over the first's against the target 1.1x, and whether the newest
restored disk equals the source. Quick run: --chain --chain-disk 1GiB --chain-data 512MiB --incrementals 10.

Slow links (--slow-links, instead of the thin giants): two VMs `near` and `far`, each a --link-disk (default 4GiB)
disk holding --link-data (default 2GiB) of random data in --pieces pieces (seeds of their own, so the second backup
dedups nothing against the first), one stack and one repository, the object store behind bench/latency_proxy.py.
A full backup and a restore (as a new VM, the restored disk checked against the source) of `near` with the proxy
adding nothing, then of `far` with --latency-ms (default 50) added to every request to the store (after an
untimed backup and restore of a small disk, so neither is the stack's first): each one's throughput with the
latency against without, target at least 70 %. The proxy stays in the path for both, so only its latency differs.
--latency-first measures `far` (with the latency) before `near`.
Quick run: --slow-links --link-disk 1GiB --link-data 512MiB --pieces 48.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from backup import steps_shown
from site_setup import GIB, MIB, Site, human, say

from olvm_backup.engine.cbt import INACTIVITY_TIMEOUT
from olvm_backup.stack import components, embedded
from olvm_backup.stack.processes import ManagedProcess, free_port, port_open
from services.snapshotter.steps import ENGINE_STEPS

UNITS = {"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
RSS_BOUND = 300 * MIB
NOT_OURS = ("broker", "object-store")


def size(text: str) -> int:
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kmgt]i?b?|b)?\s*", text.lower())
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 8TiB, 1.5GiB, 512MiB)")
    unit = (m.group(2) or "").replace("ib", "").replace("b", "")
    return int(float(m.group(1)) * UNITS[unit + "ib" if unit else ""])


def sized(n: int) -> str:
    """A disk's size: TiB for a giant."""
    return f"{n / (1 << 40):g} TiB" if n >= 1 << 40 else human(n)


def pieces(disk_size: int, data: int, count: int, seed: int) -> list[dict]:
    """`data` bytes in `count` MiB-aligned pieces of random data, spread evenly over the disk."""
    piece = data // count // MIB * MIB
    if piece < MIB or piece * count > disk_size:
        raise SystemExit(f"cannot spread {human(data)} in {count} pieces of whole MiB over {sized(disk_size)}")
    stride = disk_size // count // MIB * MIB
    return [{"offset": i * stride, "length": piece, "pattern": "random", "seed": seed * 100000 + i}
            for i in range(count)]


def inventory(disks: dict[str, tuple[int, list[dict]]]) -> dict:
    vms = [{"name": name, "cluster": "Default", "memory": "2GiB", "status": "up", "guest_agent": True,
            "nics": [{"name": "nic1", "interface": "virtio", "network": "ovirtmgmt"}],
            "disks": [{"name": f"{name}_os", "size": disk_size, "format": "cow", "interface": "virtio_scsi",
                       "bootable": True, "storage_domain": "data1", "content": content}]}
           for name, (disk_size, content) in disks.items()]
    return {"data_centers": [{"name": "Default"}], "clusters": [{"name": "Default", "data_center": "Default"}],
            "hosts": [{"name": "host1", "cluster": "Default"}],
            "storage_domains": [{"name": "data1", "data_center": "Default"}], "vms": vms}


def backup(site: Site, vm: str, mode: str) -> dict:
    """One timed backup: seconds, the CLI's steps, and the restore point's bytes read from imageio."""
    elapsed, run = site.cli("backup", vm, "--mode", mode, "--wait")
    _, listed = site.cli("backups", vm, "--json")
    point = json.loads(listed.stdout)[-1]
    assert point["mode"] == mode, point
    return {"s": elapsed, "steps": steps_shown(run.stderr), "read": sum(d["bytes_read"] for d in point["disks"])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, help="scratch directory (default: a new one under /var/tmp)")
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--giant", type=size, default=8 << 40, help="the thin giant's virtual size (default 8TiB)")
    parser.add_argument("--small", type=size, default=4 * GIB, help="the baseline disk's size (default 4GiB)")
    parser.add_argument("--data", type=size, default=3 * GIB // 2, help="data on each disk (default 1.5GiB)")
    parser.add_argument("--pieces", type=int, default=384, help="pieces the data is spread in (default 384)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--chain", action="store_true", help="the chain depth section instead of the thin giants")
    parser.add_argument("--chain-disk", type=size, default=4 * GIB, help="the chain's disk size (default 4GiB)")
    parser.add_argument("--chain-data", type=size, default=2 * GIB, help="data on the chain's disk (default 2GiB)")
    parser.add_argument("--incrementals", type=int, default=30, help="incrementals after the full (default 30)")
    parser.add_argument("--slow-links", action="store_true", help="the slow links section instead of thin giants")
    parser.add_argument("--link-disk", type=size, default=4 * GIB, help="slow links: each disk's size (default 4GiB)")
    parser.add_argument("--link-data", type=size, default=2 * GIB, help="slow links: data on each (default 2GiB)")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="slow links: added per request (default 50)")
    parser.add_argument("--latency-first", action="store_true", help="slow links: measure with the latency first")
    args = parser.parse_args()
    if args.slow_links:
        return slow_links(args)
    if args.chain:
        return chain_depth(args)
    giant, small = pieces(args.giant, args.data, args.pieces, 1), pieces(args.small, args.data, args.pieces, 2)
    data = sum(p["length"] for p in giant)
    work = args.work or Path(tempfile.mkdtemp(prefix="olvm-bench-scale-", dir="/var/tmp"))
    try:
        site = Site(work, readers=args.readers,
                    site=inventory({"giant": (args.giant, giant), "small": (args.small, small)}))
        say(f"seeding {human(data)} in {args.pieces} pieces on a {sized(args.giant)} and a {sized(args.small)} disk")
        with site:
            passphrase = work / "repository.passphrase"
            passphrase.write_text(secrets.token_urlsafe(32) + "\n")
            passphrase.chmod(0o600)
            fulls = {}
            for vm in ("small", "giant"):
                say(f"olvm-backup: full backup of {vm} (new repository, stack restarted)")
                site.fresh_repository(True, f"olvm-bench-scale-{vm}", passphrase, pause=2.0)
                fulls[vm] = backup(site, vm, "full")
                say(f"  {fulls[vm]['s']:.1f} s")
            rss = site.service_rss()

            # 1 % of the data changed, in 1 MiB writes inside the pieces (whole MiB, so bitmaps add nothing)
            changed = max(1, data // 100 // MIB)
            rnd = random.Random(26)
            slots = rnd.sample([(p["offset"] + k * MIB) for p in giant for k in range(p["length"] // MIB)], changed)
            say(f"guest: changing {human(changed * MIB)} (1 % of the data) in 1 MiB writes spread over the giant")
            from sim.client import SimAdmin
            admin = SimAdmin(work / "sim")
            for i, offset in enumerate(slots):
                admin.write("giant", "giant_os", offset, MIB, seed=900000 + i)
            say("olvm-backup: incremental backup of giant")
            inc = backup(site, "giant", "incremental")
            rss_inc = site.service_rss()
        rss = {name: max(value, rss_inc.get(name, 0)) for name, value in rss.items()}
        report(args, data, fulls, inc, changed * MIB, rss)
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


CHAIN_TARGET = 1.1
STORE_READS = re.compile(r"waited ([0-9.]+)s for chunks from the store, ([0-9.]+)s for imageio; "
                         r"store reads so far: (\d+) GETs, (\d+) bytes")


def restore_timed(site: Site, backup_id: str, name: str, disk: str) -> dict:
    """One restore as a new VM, timed (the whole job), with the restorer's GETs and bytes read from the store
    (from the line its upload logs at the end; the restorer's counters are per job)."""
    log = site.settings.data_dir / "logs" / "restorer-1.log"
    seen = log.read_text(errors="replace") if log.exists() else ""
    elapsed, _ = site.cli("restore", backup_id, "--name", name, "--disk", disk, "--wait")
    new = log.read_text(errors="replace")[len(seen):] if log.exists() else ""
    reads = STORE_READS.findall(new)
    store_wait, imageio_wait, gets, fetched = (float(reads[-1][0]), float(reads[-1][1]), int(reads[-1][2]),
                                               int(reads[-1][3])) if reads else (-1.0, -1.0, -1, -1)
    return {"s": elapsed, "gets": gets, "bytes": fetched, "store_wait": store_wait, "imageio_wait": imageio_wait}


def chain_depth(args) -> int:
    """A full and --incrementals incrementals, each after 1 % of the data changed; restore the first and the newest."""
    count = max(1, args.chain_data // (8 * MIB))
    content = pieces(args.chain_disk, args.chain_data, count, 3)
    data = sum(p["length"] for p in content)
    vm, disk = "chain", "chain_os"
    slots = [p["offset"] + k * MIB for p in content for k in range(p["length"] // MIB)]
    per_inc = max(1, data // 100 // MIB)
    if per_inc * args.incrementals > len(slots):
        raise SystemExit("not enough data for that many incrementals in different places")
    rnd = random.Random(2626)
    changes = rnd.sample(slots, per_inc * args.incrementals)
    work = args.work or Path(tempfile.mkdtemp(prefix="olvm-bench-chain-", dir="/var/tmp"))
    try:
        site = Site(work, site=inventory({vm: (args.chain_disk, content)}))
        say(f"chain depth: {human(data)} on a {sized(args.chain_disk)} disk, a full and {args.incrementals} "
            f"incrementals of {human(per_inc * MIB)} changed each")
        with site:
            from sim.client import SimAdmin
            admin = SimAdmin(work / "sim")
            t = time.monotonic()
            site.cli("backup", vm, "--mode", "full", "--wait")
            for n in range(args.incrementals):
                for i, offset in enumerate(changes[n * per_inc:(n + 1) * per_inc]):
                    admin.write(vm, disk, offset, MIB, seed=700000 + n * 1000 + i)
                site.cli("backup", vm, "--mode", "incremental", "--wait")
            say(f"  chain backed up in {time.monotonic() - t:.0f} s")
            source = admin.checksum(vm, disk)
            _, listed = site.cli("backups", vm, "--json")
            points = json.loads(listed.stdout)
            assert len(points) == args.incrementals + 1 and points[0]["mode"] == "full", points
            say("olvm-backup: restore of the first restore point (the full)")
            first = restore_timed(site, points[0]["backup_id"], "chain-first", disk)
            say(f"  {first['s']:.1f} s")
            say(f"olvm-backup: restore of the newest restore point (incremental {args.incrementals})")
            newest = restore_timed(site, points[-1]["backup_id"], "chain-newest", disk)
            say(f"  {newest['s']:.1f} s")
            equal = admin.checksum("chain-newest", disk) == source
            rss = site.service_rss()
        ratio = newest["s"] / first["s"]
        print(f"\nchain depth: {human(data)} of random data on a {sized(args.chain_disk)} disk; a full and "
              f"{args.incrementals} incrementals ({human(per_inc * MIB)}, 1 %, changed before each)")
        print(f"{'restore (whole job)':<34}{'seconds':>10}{'GETs':>8}{'fetched':>12}   upload waited for")
        for label, r in (("first restore point (full)", first), (f"newest (incremental {args.incrementals})", newest)):
            print(f"{label:<34}{r['s']:>8.1f} s{r['gets']:>8}{human(r['bytes']):>12}   the store "
                  f"{r['store_wait']:.1f} s, imageio {r['imageio_wait']:.1f} s")
        print(f"restorer peak RSS {human(rss.get('restorer-1', 0))}")
        print(f"target {'met   ' if ratio <= CHAIN_TARGET else 'MISSED'}  newest restore within {CHAIN_TARGET}x "
              f"of the first ({ratio:.2f}x)")
        print(f"newest restored disk equals the source: {'yes' if equal else 'NO'}")
        return 0 if equal else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def slow_links(args) -> int:
    near, far = (pieces(args.link_disk, args.link_data, args.pieces, seed) for seed in (3, 4))
    data = sum(p["length"] for p in near)
    work = args.work or Path(tempfile.mkdtemp(prefix="olvm-bench-links-", dir="/var/tmp"))
    proxy: ManagedProcess | None = None
    store_port = free_port()
    real_store = components.object_store

    def behind_proxy(host: str, port: int, *a, **kw) -> ManagedProcess:
        """The stack's store on a port of its own; the proxy on the one the services use."""
        nonlocal proxy
        if proxy is None:
            proxy = ManagedProcess("latency-proxy", [
                sys.executable, str(Path(__file__).with_name("latency_proxy.py")), "--listen", f"{host}:{port}",
                "--target", f"{host}:{store_port}", "--latency-ms", str(args.latency_ms), "--off"],
                log_file=work / "latency-proxy.log", ready=lambda: port_open(host, port)).start()
        return real_store(host, store_port, *a, **kw)

    embedded.components.object_store = behind_proxy
    try:
        site = Site(work, readers=args.readers,
                    site=inventory({"near": (args.link_disk, near), "far": (args.link_disk, far),
                                    "warm": (64 * MIB, pieces(64 * MIB, 16 * MIB, 4, 5))}))
        say(f"seeding {human(data)} in {args.pieces} pieces on each of two {sized(args.link_disk)} disks")
        measured = {}
        with site:
            say("warming up (untimed): a backup and a restore of a 64 MiB disk, so neither measured run is the first")
            backup(site, "warm", "full")
            point = json.loads(site.cli("backups", "warm", "--json")[1].stdout)[-1]
            site.cli("restore", point["backup_id"], "--name", "warm-restored", "--disk", "warm_os", "--wait")
            runs = [("near", 0.0), ("far", args.latency_ms)]
            for vm, latency in reversed(runs) if args.latency_first else runs:
                os.kill(proxy.pid, signal.SIGUSR1 if latency else signal.SIGUSR2)
                say(f"olvm-backup: full backup of {vm}, {latency:g} ms added per request to the store")
                b = backup(site, vm, "full")
                point = json.loads(site.cli("backups", vm, "--json")[1].stdout)[-1]
                say(f"  {b['s']:.1f} s; restore of {vm} as a new VM")
                r, _ = site.cli("restore", point["backup_id"], "--name", f"{vm}-restored", "--disk", f"{vm}_os",
                                "--wait")
                same = site.checksum(f"{vm}-restored", f"{vm}_os") == site.checksum(vm, f"{vm}_os")
                say(f"  {r:.1f} s, restored disk equals the source: {same}")
                measured[vm] = {"backup": b["s"], "restore": r, "same": same, "steps": b["steps"]}
            rss = site.service_rss()
        print(f"\nslow links: {human(data)} of random data on a {sized(args.link_disk)} disk, "
              f"{args.latency_ms:g} ms added per request to the object store (bench/latency_proxy.py)")
        print(f"{'':24}{'no latency':>16}{f'{args.latency_ms:g} ms':>16}{'kept':>8}")
        for what in ("backup", "restore"):
            fast, slow = measured["near"][what], measured["far"][what]
            kept = fast / slow
            label = "full backup" if what == "backup" else "restore (whole job)"
            print(f"{label:<24}{human(data / fast) + '/s':>16}{human(data / slow) + '/s':>16}{kept:>7.0%}"
                  f"   ({fast:.1f} s, {slow:.1f} s)")
        for vm in ("near", "far"):
            print(f"  backup of {vm}, where the time went: "
                  + ", ".join(f"{k} {v:.2f} s" for k, v in measured[vm]["steps"].items()))
        same = all(m["same"] for m in measured.values())
        print(f"every restored disk equals its source: {'yes' if same else 'NO'}")
        print("peak RSS: " + ", ".join(f"{n} {human(v)}" for n, v in sorted(rss.items())))
        for what in ("backup", "restore"):
            kept = measured["near"][what] / measured["far"][what]
            print(f"target {'met   ' if kept >= 0.7 else 'MISSED'}  {what} keeps >= 70 % of its throughput "
                  f"with {args.latency_ms:g} ms per request ({kept:.0%})")
        return 0 if same else 1
    finally:
        embedded.components.object_store = real_store
        if proxy is not None:
            proxy.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def report(args, data: int, fulls: dict, inc: dict, changed: int, rss: dict[str, int]) -> None:
    def met(ok: bool) -> str:
        return "met   " if ok else "MISSED"

    print(f"\nthin giants: {human(data)} of random data in {args.pieces} pieces spread over each disk")
    print(f"{'':34}{'seconds':>10}{'read':>12}")
    for vm, disk_size in (("small", args.small), ("giant", args.giant)):
        f = fulls[vm]
        print(f"{'full backup, ' + sized(disk_size) + ' disk':<34}{f['s']:>8.1f} s{human(f['read']):>12}")
        engine = sum(v for k, v in f["steps"].items() if k in ENGINE_STEPS)
        print("  where the time went: " + ", ".join(f"{k} {v:.2f} s" for k, v in f["steps"].items())
              + f"; engine steps {engine:.2f} s")
    ratio = fulls["giant"]["s"] / fulls["small"]["s"]
    print(f"{'incremental, giant (1 % changed)':<34}{inc['s']:>8.1f} s{human(inc['read']):>12}"
          f"   for {human(changed)} changed")
    print("  where the time went: " + ", ".join(f"{k} {v:.2f} s" for k, v in inc["steps"].items()))
    extents = max(fulls["giant"]["steps"].get("extents", 0.0), inc["steps"].get("extents", 0.0))
    print(f"extent queries of the giant: {fulls['giant']['steps'].get('extents', 0.0):.2f} s (full), "
          f"{inc['steps'].get('extents', 0.0):.2f} s (incremental: dirty extents); transfers' inactivity timeout "
          f"{INACTIVITY_TIMEOUT} s")
    print("peak RSS:")
    for name, value in sorted(rss.items()):
        flag = "" if name in NOT_OURS or value < RSS_BOUND else "  (over 300 MiB)"
        print(f"  {name:<16}{human(value):>12}{flag}")
    targets = [
        (f"full backup of the {sized(args.giant)} disk within 1.5x of the {sized(args.small)} disk's "
         f"({ratio:.2f}x)", ratio <= 1.5),
        (f"incremental reads only what changed: {human(inc['read'])} read for {human(changed)} changed (+2 MiB)",
         inc["read"] <= changed + 2 * MIB),
        (f"extent queries within the transfers' inactivity timeout ({extents:.2f} s of {INACTIVITY_TIMEOUT} s)",
         extents < INACTIVITY_TIMEOUT),
        ("every service < 300 MiB RSS", all(v < RSS_BOUND for n, v in rss.items() if n not in NOT_OURS)),
    ]
    for name, ok in targets:
        print(f"target {met(ok)}  {name}")


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    say(f"done in {time.monotonic() - started:.0f}s")
    raise SystemExit(code)
