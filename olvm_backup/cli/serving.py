"""`olvm-backup serve` (a restore point disk over NBD, optionally writable through an overlay, and over iSCSI) and
`olvm-backup mount` (restore point disks as raw image files over FUSE)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..access import exports
from ..access.exports import Address, ExportSpec
from ..config import Settings
from ..errors import BackupError


def add_parsers(sub) -> None:
    serve = sub.add_parser(
        "serve", help="serve a restore point disk over NBD (read-only; --writable keeps writes in an overlay file) "
        "and optionally iSCSI; --list, --stop ID",
        description="Runs in the foreground until Ctrl-C or SIGTERM; --detach leaves it running (see --list,\n"
        "--stop). Holes of the disk are reported as NBD base:allocation extents. The restore point itself\n"
        "never changes.",
        epilog="examples:\n"
        "  olvm-backup serve RP --disk root --listen tcp:0.0.0.0:10809 --detach\n"
        "  qemu-img convert -p -O qcow2 nbd://backup-host:10809 root.qcow2\n"
        "  olvm-backup serve RP --disk root --writable --overlay /var/tmp/root.qcow2 --listen tcp:0.0.0.0:10810\n"
        "  olvm-backup serve RP --disk root --iscsi tcp:0.0.0.0:3260 --allow iqn.1994-05.com.redhat:host1\n"
        "  olvm-backup serve --list; olvm-backup serve --stop ID",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("restore_point", nargs="?", help="restore point (backup) id")
    serve.add_argument("--disk", help="disk name or id")
    serve.add_argument("--listen", type=_address, metavar="unix:PATH|tcp:HOST:PORT",
                       help="where the NBD export listens (default: a Unix socket under the data dir, printed)")
    serve.add_argument("--writable", action="store_true",
                       help="accept writes, kept in the --overlay file (copy-on-write); the restore point is unchanged")
    serve.add_argument("--overlay", type=Path, metavar="FILE",
                       help="qcow2 file holding the writes; given again, a new export finds them there")
    serve.add_argument("--iscsi", type=_address, metavar="tcp:HOST:PORT",
                       help="also an iSCSI target (LUN 1) on this portal (tgtd)")
    serve.add_argument("--allow", action="append", default=[], metavar="IQN|ADDRESS",
                       help="initiator allowed to log in to the iSCSI target: its IQN, an IP address, a CIDR range or "
                       "ALL (repeat; at least one with --iscsi)")
    serve.add_argument("--detach", action="store_true", help="leave the export running in the background")
    serve.add_argument("--list", action="store_true", help="the running exports")
    serve.add_argument("--stop", metavar="ID", help="stop the export ID")
    serve.add_argument("--id", help=argparse.SUPPRESS)  # a detached export's id, chosen by the command that detaches
    serve.set_defaults(func=serve_command)

    mount = sub.add_parser("mount", help="mount a restore point read-only (FUSE): DIR/<disk>.raw for every disk "
                           "(--files: and DIR/files/<disk>/<volume>/...), until Ctrl-C or `fusermount3 -u DIR`")
    mount.add_argument("restore_point", help="restore point (backup) id")
    mount.add_argument("dir", type=Path, help="an existing empty directory")
    mount.add_argument("--disk", action="append", default=[], metavar="DISK", help="only this disk (repeat)")
    mount.add_argument("--detach", action="store_true", help="leave it mounted in the background (unmount with "
                       "`fusermount3 -u DIR`)")
    mount.add_argument("--files", action="store_true", help="also the files of the disks' file systems under "
                       "DIR/files/<disk>/<volume>/ (as `olvm-backup files` names them; needs the 'files' extra)")
    mount.set_defaults(func=mount_command)


def _address(text: str) -> Address:
    try:
        return Address.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def serve_command(settings: Settings, args) -> int:
    if args.list:
        return list_exports(settings)
    if args.stop:
        state = exports.stop(settings, args.stop)
        print(f"stopped export {args.stop} (restore point {state['backup_id']} disk {state['disk']})")
        return 0
    if not args.restore_point or not args.disk:
        raise BackupError("serve needs a restore point and --disk (or --list, or --stop ID)")
    spec = ExportSpec(args.restore_point, args.disk, args.listen, args.writable,
                      args.overlay.absolute() if args.overlay else None, args.iscsi, tuple(args.allow))
    spec.check()
    if args.detach:
        export_id = exports.new_id()
        state = exports.start_detached(settings, _foreground_argv(spec, export_id), export_id)
        _print_ready(state, detached=True)
        return 0
    return exports.serve(settings, spec, args.id or exports.new_id(), lambda state: _print_ready(state))


def _foreground_argv(spec: ExportSpec, export_id: str) -> list[str]:
    argv = ["serve", spec.backup_id, "--disk", spec.disk, "--id", export_id]
    if spec.listen is not None:
        argv += ["--listen", str(spec.listen)]
    if spec.writable:
        argv += ["--writable", "--overlay", str(spec.overlay)]
    if spec.iscsi is not None:
        argv += ["--iscsi", str(spec.iscsi)]
    for allowed in spec.allow:
        argv += ["--allow", allowed]
    return argv


def _print_ready(state: dict, *, detached: bool = False) -> None:
    mode = f"writable, writes in {state['overlay']}" if state["writable"] else "read-only"
    print(f"export {state['id']}: restore point {state['backup_id']} disk {state['disk']} "
          f"({state['size']} bytes, {mode})")
    print(f"  NBD    {state['nbd']}")
    if state["iscsi"]:
        print(f"  iSCSI  {state['iscsi']}  (allowed: {', '.join(state['allow'])})")
    print(f"  stop   olvm-backup serve --stop {state['id']}" if detached else "  serving until Ctrl-C", flush=True)


def list_exports(settings: Settings) -> int:
    found = exports.running(settings)
    if not found:
        print("no exports")
        return 0
    print(f"{'ID':<9} {'RESTORE POINT':<38} {'DISK':<16} {'ADDRESS':<40} {'WRITABLE':<8} ISCSI")
    for s in found:
        rw = "yes" if s["writable"] else "no"
        down = "" if s["alive"] else "  (DEAD: --stop cleans up)"
        print(f"{s['id']:<9} {s['backup_id']:<38} {s['disk']:<16} {s['nbd']:<40} {rw:<8} {s['iscsi'] or '-'}{down}")
    return 0


def mount_command(settings: Settings, args) -> int:
    from ..access.mount import mount

    if args.detach:
        return _mount_detached(settings, args)

    def ready(names: list[str]) -> None:
        print(f"restore point {args.restore_point} mounted read-only on {args.dir}: {', '.join(names)}")
        print(f"  unmount with Ctrl-C or `fusermount3 -u {args.dir}`", flush=True)

    started = time.monotonic()
    mount(settings, args.restore_point, args.dir, args.disk, files=args.files, ready=ready)
    print(f"unmounted {args.dir} after {time.monotonic() - started:.0f}s", file=sys.stderr)
    return 0


def _mount_detached(settings: Settings, args, timeout: float = 90.0) -> int:
    """The same mount in the background: returns once it is in place, or with its error."""
    from ..access.mounts import is_mounted

    where = args.dir.absolute()
    argv = ["mount", args.restore_point, str(where), *(f"--disk={d}" for d in args.disk),
            *(["--files"] if args.files else [])]
    log = settings.data_dir / "logs" / "mounts" / f"{args.restore_point}-{time.strftime('%Y%m%dT%H%M%S')}.log"
    child = exports.spawn_cli(settings, argv, log)
    deadline = time.monotonic() + timeout
    while not (is_mounted(where) and "mounted read-only" in exports.tail(log)):
        if child.poll() is not None:
            print(f"olvm-backup: mount did not start:\n{exports.tail(log)}", file=sys.stderr)
            return 1
        if time.monotonic() > deadline:
            child.terminate()
            print(f"olvm-backup: mount not in place after {timeout:.0f}s; see {log}", file=sys.stderr)
            return 1
        time.sleep(0.1)
    print(exports.tail(log, 2))
    print(f"  (pid {child.pid}, log {log})")
    return 0
