"""`olvm-backup user add|remove|list|passwd`: the API's and the console's local users (olvm_backup/users.py).

Passwords come from a file or are typed twice at a terminal, never from an argument (an argument is in the
process list and the shell's history)."""
from __future__ import annotations

import getpass
import sys

from ..config import Settings
from ..secret import read_secret_file
from ..users import ROLES, UserError, Users, users_file


def _password(name: str, path: str | None) -> str:
    if path:
        try:
            return read_secret_file(path).reveal()
        except OSError as e:
            raise UserError(f"cannot read {path}: {e.strerror or e}", user=name) from None
    if not sys.stdin.isatty():
        raise UserError("no terminal to type the password at: give --password-file", user=name)
    first = getpass.getpass(f"password for {name}: ")
    if getpass.getpass("again: ") != first:
        raise UserError("the two passwords differ", user=name)
    return first


def run(settings: Settings, args) -> int:
    users = Users(users_file(settings.data_dir))
    command = args.user_command
    if command == "list":
        found = users.load()
        if not found:
            print("no users (`olvm-backup user add NAME --role admin`)", file=sys.stderr)
        for user in sorted(found.values(), key=lambda u: u.name):
            print(f"{user.name:<24} {user.role}")
        return 0
    if command == "add":
        users.add(args.name, args.role, _password(args.name, args.password_file))
        print(f"user {args.name} added ({args.role})")
    elif command == "remove":
        users.remove(args.name)
        print(f"user {args.name} removed (their open console and API sessions end with it)")
    else:
        users.set_password(args.name, _password(args.name, args.password_file), args.role)
        print(f"user {args.name}: password changed (their open console and API sessions end)")
    return 0


def add_user_parser(sub) -> None:
    user = sub.add_parser("user", help="the web console's and the REST API's users: add, remove, list, passwd",
                          description=f"Local users with a role: {' or '.join(ROLES)} (an operator backs up, "
                          "restores and browses; only an admin changes policies). Kept, with scrypt hashes of "
                          "their passwords, in <data dir>/api/users.json.")
    user.set_defaults(func=run)
    commands = user.add_subparsers(dest="user_command", required=True)
    commands.add_parser("list", help="every user and their role")
    for verb, what in (("add", "add a user (the password typed twice, or from --password-file)"),
                       ("passwd", "change a user's password (and, with --role, their role)")):
        # No abbreviations: `--password SECRET` must be refused, not taken for --password-file.
        p = commands.add_parser(verb, help=what, allow_abbrev=False)
        p.add_argument("name")
        p.add_argument("--role", choices=ROLES, required=verb == "add", default=None)
        p.add_argument("--password-file", metavar="FILE", help="file whose first line is the password")
    remove = commands.add_parser("remove", help="remove a user")
    remove.add_argument("name")
