"""Backup benchmark (not a test): a 4 GiB disk with 2 GiB of mixed data, measured in one run against baselines.

    .venv/bin/python bench/backup.py [--work DIR] [--readers N] [--writers N] [--encryption both|on|off] [--runs N]
                                     [--strategy cbt|snapshot|both]

Prints, all measured here and now:
- full backup through the pipeline vs a plain ovirt_imageio.client.download of the same disk, and vs
  `restic backup` of that downloaded image into a local repository (restic encrypts too); the full backup's and
  restic's times are medians of --runs runs (default 3), each a first backup into an empty repository;
- the full backup with encryption on (a new repository's default) and off (a repository made by
  `olvm-backup init --no-encryption`), --runs of each, alternated (on, off / off, on ...) so that machine noise
  hits both alike: each's median time, bytes read from imageio and throughput (read / median time), bytes stored,
  and ratio to restic's median full; then the encrypted ratio over the unencrypted one (issue 25: within 5 %).
  Before each of these full backups the stack is stopped and started again on a new bucket initialised in that
  mode (untimed, waited on until idle), so every run starts alike;
- incremental backup after 1% of the disk changed vs restic's second backup of the changed image (both onto the
  last full backup; --encryption on or both: encrypted);
- bytes stored in the object store vs restic's repository growth;
- peak RSS of every process of the stack (as last restarted), and of restic;
- with --strategy snapshot (or both: the same), the snapshot strategy (disk image transfer) beside CBT's figures:
  a full backup into a new repository (stack restarted, untimed), 1% of the disk changed again, an incremental;
  each's time, bytes read from imageio and stored, against restic's full and second run.
Targets (issue 4): full no slower than restic; incremental >= 10x faster than restic's second run; stored bytes
<= restic's; every service < 300 MiB RSS. Issue 25: the full backup's ratio to restic with encryption on within
5 % of the unencrypted run's (with --encryption both).
"""
from __future__ import annotations

import argparse
import random
import re
import secrets
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from site_setup import DISK, DISK_SIZE, MIB, VM, Restic, Site, human, plain_download, say

from services.snapshotter.steps import ENGINE_STEPS

CHANGED = DISK_SIZE // 100 // MIB * MIB  # 1% of the disk (40 MiB of 4 GiB), in 1 MiB writes spread over it


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, help="scratch directory (default: a new one under /var/tmp)")
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--writers", type=int, default=1)
    parser.add_argument("--encryption", choices=("both", "on", "off"), default="both",
                        help="the repository of the full backups: encrypted (the default of a new repository), "
                             "initialised with --no-encryption, or both, alternated (default both)")
    parser.add_argument("--runs", type=int, default=3,
                        help="full backups per encryption mode, and restic full backups, whose medians are shown "
                             "(default 3)")
    parser.add_argument("--strategy", choices=("cbt", "snapshot", "both"), default="cbt",
                        help="cbt (default): CBT backups only; snapshot or both: the snapshot strategy's full and "
                             "incremental too, shown beside CBT's (always measured: they are its baseline)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be 1 or more")
    modes = ["on", "off"] if args.encryption == "both" else [args.encryption]
    work = args.work or Path(tempfile.mkdtemp(prefix="olvm-bench-", dir="/var/tmp"))
    figures: dict[str, float] = {}
    fulls: dict[str, list[dict]] = {mode: [] for mode in modes}
    restic_runs: list[float] = []
    try:
        with Site(work, readers=args.readers, writers=args.writers) as site:
            image = work / "image.raw"
            passphrase = work / "repository.passphrase"
            passphrase.write_text(secrets.token_urlsafe(32) + "\n")
            passphrase.chmod(0o600)

            say("baseline: plain ovirt_imageio.client.download of the disk (raw)")
            figures["download_s"] = plain_download(site, image)
            figures["restic_rss"] = 0
            restic = None
            buckets = 0
            for r in range(args.runs):
                # restic into a new repository each round, so each of its runs is a first backup too
                if restic is not None:
                    shutil.rmtree(restic.repo, ignore_errors=True)
                    shutil.rmtree(work / "restic-cache", ignore_errors=True)
                restic = Restic(work / f"restic-repo-{r + 1}")
                say(f"round {r + 1}/{args.runs}: baseline: restic backup of the downloaded image")
                elapsed, rss = restic.backup(image)
                restic_runs.append(elapsed)
                figures["restic_rss"] = max(figures["restic_rss"], rss)
                # alternated (on, off / off, on ...), the last round ending with the first mode, whose repository
                # then holds the full backup the incremental builds on
                order = modes[::-1] if (args.runs - 1 - r) % 2 == 0 else modes
                for mode in order:
                    buckets += 1
                    say(f"round {r + 1}/{args.runs}: olvm-backup: full backup, encryption {mode} "
                        f"(new repository, stack restarted)")
                    site.fresh_repository(mode == "on", f"olvm-bench-{buckets}", passphrase)
                    fulls[mode].append(full_backup(site))
                    say(f"  {fulls[mode][-1]['s']:.1f} s")
            figures["restic_full_s"] = statistics.median(restic_runs)
            figures["restic_full_bytes"] = restic.size()
            last = fulls[modes[0]][-1]
            figures["full_s"] = statistics.median(run["s"] for run in fulls[modes[0]])
            figures["full_bytes"] = last["bytes"]
            steps = {"full": last["steps"]}
            full_cpu = last["cpu"]

            say(f"guest: changing {human(CHANGED)} (1%) in 1 MiB writes spread over the disk")
            rnd = random.Random(42)
            slots = rnd.sample(range(DISK_SIZE // MIB), CHANGED // MIB)
            for i, slot in enumerate(slots):
                site.guest_write(slot * MIB, MIB, seed=1000 + i)

            say(f"olvm-backup: incremental backup (encryption {modes[0]})")
            before = site.bucket_bytes()
            figures["inc_s"], run = site.cli("backup", VM, "--mode", "incremental", "--wait")
            steps["incremental"] = steps_shown(run.stderr)
            figures["inc_bytes"] = site.bucket_bytes() - before
            points = site.restore_points()
            inc = next(p for p in points if p["mode"] == "incremental")
            figures["inc_read"] = sum(d["bytes_read"] for d in inc["disks"])

            say("baseline: download the changed disk, then restic's second backup")
            plain_download(site, image)
            size_before = restic.size()
            figures["restic_inc_s"], rss = restic.backup(image)
            figures["restic_rss"] = max(figures["restic_rss"], rss)
            figures["restic_inc_bytes"] = restic.size() - size_before
            rss_by_process = site.service_rss()
            figures["broker_now"] = site.broker_rss_now()
            figures["broker_bound"] = site.settings.pipeline.waves_in_flight * site.settings.pipeline.wave_bytes
            snapshot = snapshot_strategy(site, modes[0], passphrase) if args.strategy != "cbt" else None
        report(figures, rss_by_process, modes[0], args.runs)
        if snapshot is not None:
            report_strategies(figures, snapshot, modes[0])
        for mode, shown in steps.items():
            engine = sum(v for k, v in shown.items() if k in ENGINE_STEPS)
            took = last["s"] if mode == "full" else figures["inc_s"]
            print(f"{mode} backup, where the time went: " + ", ".join(f"{k} {v:.2f} s" for k, v in shown.items())
                  + f"; engine steps {engine:.2f} s of {took:.1f} s")
        for mode, restic_s in (("full", figures["restic_full_s"]), ("incremental", figures["restic_inc_s"])):
            if "read and store" in steps[mode]:  # the data path alone, against the same restic run (not a target)
                data = steps[mode]["read and store"]
                print(f"{mode} backup's data path (read and store) {data:.2f} s vs restic {restic_s:.1f} s: "
                      f"{data / restic_s:.2f}x (restic takes {restic_s / data:.1f}x as long)")
        print(f"CPU seconds used during the last full backup (encryption {modes[0]}): " + ", ".join(
            f"{name} {used:.1f}" for name, used in sorted(full_cpu.items(), key=lambda kv: -kv[1])))
        report_encryption(fulls, restic_runs, figures["restic_full_s"])
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def change_one_percent(site: Site, seed: int) -> None:
    """The guest changes 1% of the disk in 1 MiB writes spread over it."""
    rnd = random.Random(seed)
    for i, slot in enumerate(rnd.sample(range(DISK_SIZE // MIB), CHANGED // MIB)):
        site.guest_write(slot * MIB, MIB, seed=seed * 1000 + i)


def snapshot_strategy(site: Site, mode: str, passphrase: Path) -> dict:
    """The snapshot strategy's full (into a new repository, the stack restarted untimed) and, after 1% of the disk
    changed again, its incremental: seconds, bytes read from imageio, bytes stored."""
    say(f"olvm-backup: snapshot strategy: full backup, encryption {mode} (new repository, stack restarted)")
    site.fresh_repository(mode == "on", "olvm-bench-snapshot", passphrase)
    out: dict[str, float] = {}
    for kind in ("full", "incremental"):
        if kind == "incremental":
            say(f"guest: changing {human(CHANGED)} (1%) again; olvm-backup: snapshot strategy: incremental")
            change_one_percent(site, 43)
        before = site.bucket_bytes()
        out[f"{kind}_s"], run = site.cli("backup", VM, "--strategy", "snapshot", "--mode", kind, "--wait")
        out[f"{kind}_steps"] = steps_shown(run.stderr)
        out[f"{kind}_bytes"] = site.bucket_bytes() - before
        point = next(p for p in reversed(site.restore_points()) if p["mode"] == kind and p["strategy"] == "snapshot")
        out[f"{kind}_read"] = sum(d["bytes_read"] for d in point["disks"])
    return out


def report_strategies(f: dict[str, float], snap: dict, mode: str) -> None:
    """CBT's and the snapshot strategy's full and incremental side by side, against restic's."""
    print(f"\nstrategies side by side (encryption {mode}; incrementals after {human(CHANGED)} changed):")
    print(f"{'':22}{'cbt':>12}{'snapshot':>12}{'restic':>12}")
    rows = [("full backup", f["full_s"], snap["full_s"], f["restic_full_s"]),
            ("incremental backup", f["inc_s"], snap["incremental_s"], f["restic_inc_s"])]
    for name, cbt, snapshot, restic in rows:
        print(f"{name:<22}{cbt:>10.1f} s{snapshot:>10.1f} s{restic:>10.1f} s")
    print(f"{'full: read':<22}{'':>12}{human(snap['full_read']):>12}")
    print(f"{'incremental: read':<22}{human(f['inc_read']):>12}{human(snap['incremental_read']):>12}")
    print(f"{'incremental: stored':<22}{human(f['inc_bytes']):>12}{human(snap['incremental_bytes']):>12}"
          f"{human(f['restic_inc_bytes']):>12}")
    for name, ok in (("snapshot strategy: full no slower than restic", snap["full_s"] <= f["restic_full_s"]),
                     ("snapshot strategy: incremental reads only what changed (+2 MiB)",
                      snap["incremental_read"] <= CHANGED + 2 * MIB)):
        print(f"target {'met   ' if ok else 'MISSED'}  {name}")
    for kind in ("full", "incremental"):
        print(f"snapshot strategy {kind}, where the time went: "
              + ", ".join(f"{k} {v:.2f} s" for k, v in snap[f"{kind}_steps"].items()))


def full_backup(site: Site) -> dict:
    """One timed full backup into the site's (empty) repository: seconds, bytes it added to the bucket, bytes read
    from imageio, the CLI's steps, and the CPU seconds every process of the stack used meanwhile."""
    before, cpu_before = site.bucket_bytes(), site.service_cpu()
    elapsed, run = site.cli("backup", VM, "--mode", "full", "--wait")
    stored = site.bucket_bytes() - before
    cpu = {name: used - cpu_before.get(name, 0.0) for name, used in site.service_cpu().items()}
    point = next(p for p in site.restore_points() if p["mode"] == "full")
    return {"s": elapsed, "bytes": stored, "read": sum(d["bytes_read"] for d in point["disks"]),
            "steps": steps_shown(run.stderr), "cpu": cpu}


def steps_shown(cli_output: str) -> dict[str, float]:
    """The steps of a backup as the CLI's summary shows them ("time: prepare 0.10 s, engine start 0.52 s, ...")."""
    line = next((ln for ln in cli_output.splitlines() if ln.strip().startswith("time:")), "")
    return {name: float(value) for name, value in re.findall(r"([a-z][a-z -]*?) ([0-9.]+) s", line.split(":", 1)[-1])}


def report(f: dict[str, float], rss: dict[str, int], mode: str, runs: int) -> None:
    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b else "n/a"

    print(f"\nbackup benchmark: {human(DISK_SIZE)} disk {DISK}, 2 GiB written (random, text, zeros), "
          f"plus a 64 MiB disk; {Restic.version()}")
    print(f"full backup: encryption {mode}, median of {runs} (each into an empty repository); restic full: median "
          f"of {runs} (each into a new repository); incremental: encryption {mode}")
    print(f"{'':34}{'olvm-backup':>14}{'baseline':>14}{'ratio':>10}")
    rows = [
        ("full backup vs imageio download", f["full_s"], f["download_s"], "s"),
        ("full backup vs restic backup", f["full_s"], f["restic_full_s"], "s"),
        ("incremental (1%) vs restic 2nd run", f["inc_s"], f["restic_inc_s"], "s"),
        ("stored, full vs restic repo", f["full_bytes"], f["restic_full_bytes"], "B"),
        ("stored, incremental vs restic growth", f["inc_bytes"], f["restic_inc_bytes"], "B"),
    ]
    for name, ours, base, unit in rows:
        show = (lambda v: f"{v:.1f} s") if unit == "s" else human
        print(f"{name:<34}{show(ours):>14}{show(base):>14}{ratio(ours, base):>10}")
    print(f"incremental read {human(f['inc_read'])} from imageio for {human(CHANGED)} changed; "
          f"restic second run is {ratio(f['restic_inc_s'], f['inc_s'])} the incremental's time")
    print("peak RSS:")
    for name, value in sorted(rss.items()):
        flag = "" if name in ("broker", "object-store") or value < 300 * MIB else "  (over 300 MiB)"
        print(f"  {name:<16}{human(value):>12}{flag}")
    print(f"  {'restic':<16}{human(f['restic_rss']):>12}")
    print(f"broker: {human(f['broker_now'])} resident after the backups (chunk topics deleted wave by wave); "
          f"chunks in flight bounded by waves_in_flight x wave_bytes = {human(f['broker_bound'])}")
    targets = [
        ("full no slower than restic", f["full_s"] <= f["restic_full_s"]),
        ("incremental >= 10x faster than restic's 2nd run", f["restic_inc_s"] >= 10 * f["inc_s"]),
        ("stored bytes <= restic's (full + incremental)",
         f["full_bytes"] + f["inc_bytes"] <= f["restic_full_bytes"] + f["restic_inc_bytes"]),
        ("every service < 300 MiB RSS", all(v < 300 * MIB for n, v in rss.items()
                                            if n not in ("broker", "object-store"))),
    ]
    targets.append(("broker peak within the wave bound (+128 MiB for the broker itself)",
                    rss["broker"] <= f["broker_bound"] + 128 * MIB))
    for name, ok in targets:
        print(f"target {'met   ' if ok else 'MISSED'}  {name}")


def report_encryption(fulls: dict[str, list[dict]], restic_runs: list[float], restic_s: float) -> None:
    """The full backup with encryption on and off: medians, throughput, ratio to the same restic median, and (with
    both) the encrypted ratio over the unencrypted one, the issue 25 criterion (within 5 %)."""
    print(f"\nfull backup, encryption on vs off ({len(restic_runs)} run(s) each, alternated; restic full "
          f"median {restic_s:.1f} s of " + ", ".join(f"{s:.1f}" for s in restic_runs) + ")")
    print(f"{'':18}{'median':>10}{'read':>12}{'throughput':>14}{'stored':>12}{'vs restic':>11}   runs")
    ratios = {}
    for mode, runs in fulls.items():
        median = statistics.median(r["s"] for r in runs)
        read = statistics.median(r["read"] for r in runs)
        ratios[mode] = median / restic_s
        print(f"{'encryption ' + mode:<18}{median:>8.1f} s{human(read):>12}{human(read / median) + '/s':>14}"
              f"{human(runs[-1]['bytes']):>12}{ratios[mode]:>10.2f}x   " + ", ".join(f"{r['s']:.1f}" for r in runs))
    if len(ratios) == 2:
        rel = ratios["on"] / ratios["off"]
        print(f"encrypted ratio / unencrypted ratio (to restic): {ratios['on']:.3f} / {ratios['off']:.3f} = "
              f"{rel:.3f} ({(rel - 1) * 100:+.1f} %)")
        print(f"target {'met   ' if rel <= 1.05 else 'MISSED'}  full backup's ratio to restic with encryption on "
              "within 5 % of the unencrypted run's (issue 25)")


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    say(f"done in {time.monotonic() - started:.0f}s")
    raise SystemExit(code)
