"""olvm-backup: the operator's command line."""
from __future__ import annotations

import argparse
import asyncio
import sys

from ..config import describe, load_settings
from ..errors import BackupError
from ..logs import setup_logging
from ..service import secrets_of


def _up(settings, args) -> int:
    from ..stack.embedded import run_stack

    return run_stack(settings, readers=args.readers, writers=args.writers)


def _status(settings, args) -> int:
    from ..stack.status import collect

    parts = asyncio.run(collect(settings))
    width = max(len(p.part) for p in parts)
    for p in parts:
        print(f"{'ok ' if p.ok else 'DOWN'} {p.part:<{width}}  {p.where}  {p.detail}")
    return 0 if all(p.ok for p in parts) else 1


def _config(settings, args) -> int:
    for env, value, doc in describe(settings):
        print(f"{env:<26} {value:<40} # {doc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="olvm-backup", description=__doc__)
    parser.add_argument("--config", help="YAML settings file (default: $OLVM_CONFIG); env variables override it")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the embedded stack (broker, object store, services) until Ctrl-C")
    up.add_argument("--readers", type=int, default=1, help="reader processes (default 1)")
    up.add_argument("--writers", type=int, default=1, help="writer processes (default 1)")
    up.set_defaults(func=_up)

    status = sub.add_parser("status", help="show what runs and where; exit 0 only when every part answers")
    status.set_defaults(func=_status)

    config = sub.add_parser("config", help="show the effective settings (secrets masked)")
    config.set_defaults(func=_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
        setup_logging(settings.log_level, "olvm-backup", secrets_of(settings))
        return args.func(settings, args)
    except BackupError as e:
        print(f"olvm-backup: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
