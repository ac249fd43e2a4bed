"""olvm-sim: run the OLVM simulator, act as a guest, read disk hashes, arm faults."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path

from .client import SimAdmin, SimAdminError
from .inventory import size


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="olvm-sim", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the engine API, imageio host daemon and proxy until Ctrl-C")
    s.add_argument("--data", type=Path, required=True, help="state directory (kept across restarts)")
    s.add_argument("--inventory", type=Path, help="YAML/JSON inventory seeding a fresh data directory")
    s.add_argument("--port", type=int, default=0, help="engine HTTPS port (default: a free one)")
    s.add_argument("--password-file", type=Path,
                   help="file holding the admin@internal password to accept (its first line); default: "
                        "$OLVM_SIM_PASSWORD, else the one kept in DIR, else a random one. Never on the command line")
    s.add_argument("--cert-host", action="append", default=[], metavar="NAME",
                   help="another host name or address for the generated server certificate (repeatable)")
    s.add_argument("--cert", type=Path, help="serve this PEM certificate (chain) instead of the generated one")
    s.add_argument("--key", type=Path, help="the private key of --cert")
    s.add_argument("--cert-ca", type=Path, help="the CA clients need for --cert (default: --cert itself)")
    s.add_argument("--state-delay", type=float, metavar="SECONDS",
                   help="how long a VM stays powering up / powering down and a snapshot being created or removed stays "
                        "locked (default: $OLVM_SIM_STATE_DELAY, else 0.5)")
    s.add_argument("--log-level", default="WARNING")
    w = sub.add_parser("write", help="write into a running VM's disk as its guest would")
    w.add_argument("vm")
    w.add_argument("disk")
    w.add_argument("--offset", type=size, required=True)
    w.add_argument("--length", type=size, required=True)
    w.add_argument("--seed", type=int)
    w.add_argument("--zero", action="store_true", help="write zeros")
    w.add_argument("--text", help="repeat this text instead of random bytes")
    c = sub.add_parser("checksum", help="sha256 of a disk's guest-visible content")
    c.add_argument("vm")
    c.add_argument("disk")
    c.add_argument("--snapshot")
    f = sub.add_parser("fault", help="arm a fault: transfer-fail, ticket-expire, backup-stall, engine-500, "
                                     "engine-drop, backup-finalize-fail, freeze-fail, checkpoint-remove-fail, "
                                     "host-unreachable, drop-bitmaps (with --vm), snapshot-remove-fail, "
                                     "snapshot-hold (with --seconds), answer-lost (a POST done, its answer lost)")
    f.add_argument("kind")
    f.add_argument("--count", type=int, default=1)
    f.add_argument("--vm")
    f.add_argument("--seconds", type=float, help="snapshot-hold: how much longer the next snapshot stays locked")
    pf = sub.add_parser("put-file", help="in a disk seeded with filesystems:, add or replace a file as its guest "
                                         "would (only the blocks that change are written)")
    pf.add_argument("vm")
    pf.add_argument("disk")
    pf.add_argument("volume", help="the volume's name in the inventory")
    pf.add_argument("path")
    content = pf.add_mutually_exclusive_group(required=True)
    content.add_argument("--text", help="the file's content")
    content.add_argument("--random", type=size, metavar="SIZE", help="this many random bytes (--seed)")
    content.add_argument("--symlink", metavar="TARGET", help="a symlink to TARGET instead of a file")
    pf.add_argument("--seed", type=int, default=0)
    pf.add_argument("--mode", help="octal, e.g. 0644")
    pf.add_argument("--mtime", help="seconds since the epoch or an ISO 8601 time")
    rf = sub.add_parser("remove-file", help="in a disk seeded with filesystems:, remove a file or directory")
    rf.add_argument("vm")
    rf.add_argument("disk")
    rf.add_argument("volume")
    rf.add_argument("path")
    fs = sub.add_parser("filesystems", help="a seeded disk's partitions, volumes and current trees, as JSON")
    fs.add_argument("vm")
    fs.add_argument("disk")
    sh = sub.add_parser("ssh", help="a VM's SSH endpoint (started if it was not): its address, host key and "
                                     "known-hosts line as JSON; with --log, the commands it received")
    sh.add_argument("vm")
    sh.add_argument("--authorize", type=Path, metavar="PUBKEY_FILE", help="allow this public key to log in")
    sh.add_argument("--log", action="store_true", help="print the commands it received instead")
    sh.add_argument("--fail", type=int, metavar="CODE", help="the next command (or --match) exits CODE")
    sh.add_argument("--hang", type=float, metavar="SECONDS", help="the next command hangs this long")
    sh.add_argument("--stderr", help="the next command writes this to stderr")
    sh.add_argument("--match", default="", help="with --fail/--hang/--stderr: only commands containing this")
    for cmd in (w, c, f, pf, rf, fs, sh):
        cmd.add_argument("--data", type=Path, required=True, help="the data directory of the running simulator")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        from .server import serve
        if bool(args.cert) != bool(args.key):
            print("olvm-sim: --cert and --key go together", file=sys.stderr)
            return 2
        password = os.environ.get("OLVM_SIM_PASSWORD") or None
        if args.password_file:
            lines = args.password_file.read_text().splitlines()
            password = lines[0] if lines else ""
            if not password:
                print(f"olvm-sim: {args.password_file} holds no password", file=sys.stderr)
                return 2
        state_delay = args.state_delay
        if state_delay is None:
            try:
                state_delay = float(os.environ.get("OLVM_SIM_STATE_DELAY") or 0.5)
            except ValueError:
                print("olvm-sim: $OLVM_SIM_STATE_DELAY is not a number of seconds", file=sys.stderr)
                return 2
        if state_delay < 0:
            print("olvm-sim: --state-delay cannot be negative", file=sys.stderr)
            return 2
        asyncio.run(serve(args.data, args.inventory, args.port, password=password, cert_hosts=tuple(args.cert_host),
                          serve_cert=(args.cert, args.key, args.cert_ca) if args.cert else None,
                          state_delay=state_delay))
        return 0
    try:
        admin = SimAdmin(args.data)
        if args.command == "write":
            out = admin.write(args.vm, args.disk, args.offset, args.length, args.seed, zero=args.zero,
                              pattern="text" if args.text else "random", text=args.text or "")
            print(json.dumps(out))
        elif args.command == "put-file":
            entry = {"text": args.text} if args.text is not None else {"symlink": args.symlink} if args.symlink \
                else {"pattern": "random", "size": args.random, "seed": args.seed}
            if args.mode:
                entry["mode"] = args.mode
            if args.mtime:
                entry["mtime"] = int(args.mtime) if args.mtime.isdigit() else args.mtime
            print(json.dumps(admin.put_file(args.vm, args.disk, args.volume, args.path, **entry)))
        elif args.command == "remove-file":
            print(json.dumps(admin.remove_file(args.vm, args.disk, args.volume, args.path)))
        elif args.command == "filesystems":
            print(json.dumps(admin.filesystems(args.vm, args.disk), indent=1))
        elif args.command == "ssh":
            if args.log:
                print(json.dumps(admin.ssh_log(args.vm), indent=1))
            else:
                key = args.authorize.read_text().strip() if args.authorize else None
                print(json.dumps(admin.guest_ssh(args.vm, authorize=key), indent=1))
                if args.fail is not None or args.hang or args.stderr:
                    admin.ssh_behave(args.vm, args.match, exit=args.fail or 0, hang=args.hang or 0.0,
                                     stderr=args.stderr or "", count=1)
        elif args.command == "checksum":
            print(admin.checksum(args.vm, args.disk, args.snapshot))
        else:
            target = {**({"vm": args.vm} if args.vm else {}),
                      **({"seconds": args.seconds} if args.seconds is not None else {})}
            print(json.dumps(admin.fault(args.kind, args.count, **target)))
    except SimAdminError as e:
        print(f"olvm-sim: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
