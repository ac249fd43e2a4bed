"""What a pre/post command is: where it runs, at which phase, how long it may take, what counts as its failure.

Pure: `parse_spec` reads one spec from a policy document, a spec file or a request (a mapping, the same keys
everywhere), `parse_cli` reads the one-line form `olvm-backup backup --command` takes, and `spec_to_doc` writes a
spec back (`parse_spec(spec_to_doc(s)) == s`). Every error names the field.

A spec never holds a secret: it travels in backup requests (a topic) and policies (the bucket). A guest command's
SSH key and known-hosts entry are files on the backup node, named by path; an environment variable whose name says
it is a secret is refused.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from olvm_backup.errors import BackupError

# before: before the snapshot or the engine backup's checkpoint (the guest's application flushed and held); after:
# once the snapshot or checkpoint is taken (the application let go as soon as possible); after-backup: once the
# backup ended, completed or failed ($OLVM_RESULT); before-restore and after-restore: around a restore.
Phase = Literal["before", "after", "after-backup", "before-restore", "after-restore"]
PHASES: tuple[str, ...] = get_args(Phase)
BACKUP_PHASES = ("before", "after", "after-backup")
RESTORE_PHASES = ("before-restore", "after-restore")
Where = Literal["node", "guest"]
StderrPolicy = Literal["fail", "warn", "ignore"]
DEFAULT_TIMEOUT = 300.0
MAX_TIMEOUT = 24 * 3600.0
SPEC_FIELDS = ("phase", "where", "run", "name", "timeout", "ignore_exit", "stderr", "env", "host", "port", "user",
               "key_file", "known_hosts", "host_key")
GUEST_FIELDS = ("host", "port", "user", "key_file", "known_hosts", "host_key")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|PRIVATE", re.IGNORECASE)
RESERVED_ENV = "OLVM_"  # what the runner sets itself: OLVM_VM, OLVM_BACKUP_ID, OLVM_PHASE, OLVM_RESULT...


class SpecError(BackupError):
    template = "command {where}: {reason}"

    def __init__(self, reason: str, *, where: str = "") -> None:
        super().__init__(reason, where=where or "spec")
        self.where = where


@dataclass(frozen=True)
class ExitCodes:
    """Exit codes to ignore: `15,101-150` (single codes and inclusive ranges), `*` (any), or none ('')."""

    text: str = ""
    ranges: tuple[tuple[int, int], ...] = ()
    any: bool = False

    def __contains__(self, code: int) -> bool:
        return self.any or any(lo <= code <= hi for lo, hi in self.ranges)


def parse_exit_codes(value: Any, where: str = "ignore_exit") -> ExitCodes:
    if value is None or value == "" or value == []:
        return ExitCodes()
    if isinstance(value, bool):
        raise SpecError(f"{value!r} is not a list of exit codes", where=where)
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    if not isinstance(value, str):
        raise SpecError(f"a string such as '15,101-150' or '*' is expected, not {type(value).__name__}", where=where)
    text = value.replace(" ", "")
    if text == "*":
        return ExitCodes("*", (), True)
    ranges = []
    for part in text.split(","):
        m = re.fullmatch(r"(\d{1,3})(?:-(\d{1,3}))?", part)
        lo, hi = (int(m.group(1)), int(m.group(2) or m.group(1))) if m else (-1, -1)
        if not m or not 0 <= lo <= hi <= 255:
            raise SpecError(f"{part!r} is not an exit code (0-255) or a range of them (101-150); the whole: {value!r}",
                            where=where)
        ranges.append((lo, hi))
    return ExitCodes(text, tuple(ranges))


@dataclass(frozen=True)
class GuestTarget:
    """How to reach the guest: `user@host:port`, logging in with the private key in `key_file` (a path on the
    backup node), its host key pinned by `known_hosts` (a known-hosts file on the node) or `host_key` (the public
    key itself, `ssh-ed25519 AAAA...`). One of the two is required: a host key is never accepted unseen."""

    host: str
    key_file: str
    known_hosts: str = ""
    host_key: str = ""
    user: str = "root"
    port: int = 22


@dataclass(frozen=True)
class CommandSpec:
    phase: Phase
    run: tuple[str, ...]  # the argument list: never through a shell on the node (a guest's sshd hands it to one)
    where: Where = "node"
    name: str = ""  # how events name it; default: the program's name
    timeout: float = DEFAULT_TIMEOUT  # seconds; past it the command (its whole process group) is killed
    ignore_exit: ExitCodes = field(default_factory=ExitCodes)
    stderr: StderrPolicy = "warn"  # output on stderr with exit 0: fail the command, warn, or ignore it
    env: tuple[tuple[str, str], ...] = ()
    guest: GuestTarget | None = None

    @property
    def label(self) -> str:
        return self.name or self.run[0].rsplit("/", 1)[-1]

    @property
    def command_line(self) -> str:
        return shlex.join(self.run)


def _text(value: Any, where: str, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise SpecError(f"a string is expected, not {type(value).__name__}", where=where)
    if not empty and not value.strip():
        raise SpecError("must not be empty", where=where)
    return value


def _path(value: Any, where: str) -> str:
    path = _text(value, where)
    if "-----BEGIN" in path or "\n" in path:
        raise SpecError("give the path of the file on the backup node, never its content (a spec travels in "
                        "requests and policies)", where=where)
    if not path.startswith("/"):
        raise SpecError(f"{path!r} is not an absolute path on the backup node", where=where)
    return path


def parse_timeout(value: Any, where: str = "timeout") -> float:
    """Seconds (a number), or a number with s, m or h: 30, '30s', '5m', '1h'."""
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", value)
        if not m:
            raise SpecError(f"{value!r} is not a duration (seconds, or a number with s, m or h)", where=where)
        value = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_TIMEOUT:
        raise SpecError(f"{value!r} is not a timeout from 1 second to 24 hours", where=where)
    return float(value)


def parse_env(value: Any, where: str = "env") -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise SpecError("a mapping of variable names to values is expected", where=where)
    out = []
    for name, text in value.items():
        at = f"{where}.{name}"
        if not isinstance(name, str) or not ENV_NAME.match(name):
            raise SpecError(f"{name!r} is not an environment variable name", where=where)
        if name.startswith(RESERVED_ENV):
            raise SpecError(f"names starting with {RESERVED_ENV} are set by olvm-backup itself", where=at)
        if SECRET_NAME.search(name):
            raise SpecError("looks like a secret: a spec travels in backup requests and policies, so put the secret "
                            "in a file the command reads on its host", where=at)
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            text = str(text)
        out.append((name, _text(text, at, empty=True)))
    return tuple(sorted(out))


def parse_run(value: Any, where: str = "run") -> tuple[str, ...]:
    """A list of arguments, or one string split as a POSIX shell splits it (no shell runs it on the node)."""
    if isinstance(value, str):
        try:
            value = shlex.split(value)
        except ValueError as e:
            raise SpecError(f"cannot split {value!r} into arguments ({e})", where=where) from None
    if not isinstance(value, list) or not value:
        raise SpecError("the command is expected: a list of arguments, or one string", where=where)
    args = tuple(_text(v, f"{where}[{i}]", empty=i > 0) if not isinstance(v, (int, float)) or isinstance(v, bool)
                 else str(v) for i, v in enumerate(value))
    return args


def parse_spec(doc: Any, where: str = "command") -> CommandSpec:
    """One spec from a mapping (policy document, spec file, request); errors name `where` and the field."""
    if not isinstance(doc, dict):
        raise SpecError("a mapping is expected (phase, where, run, ...)", where=where)
    for key in doc:
        if key not in SPEC_FIELDS:
            raise SpecError(f"unknown field (known: {', '.join(SPEC_FIELDS)})", where=f"{where}.{key}")
    if "phase" not in doc:
        raise SpecError(f"missing (one of {', '.join(PHASES)})", where=f"{where}.phase")
    if doc["phase"] not in PHASES:
        raise SpecError(f"{doc['phase']!r} is not one of {', '.join(PHASES)}", where=f"{where}.phase")
    if "run" not in doc:
        raise SpecError("missing: the command, as a list of arguments", where=f"{where}.run")
    place = doc.get("where", "node")
    if place not in get_args(Where):
        raise SpecError(f"{place!r} is not node or guest", where=f"{where}.where")
    stderr = doc.get("stderr", "warn")
    if stderr not in get_args(StderrPolicy):
        raise SpecError(f"{stderr!r} is not one of fail, warn, ignore", where=f"{where}.stderr")
    guest = None
    given = [k for k in GUEST_FIELDS if doc.get(k) not in (None, "")]
    if place == "node" and given:
        raise SpecError(f"{', '.join(given)}: only for where: guest (a node command runs on the backup node)",
                        where=where)
    if place == "guest":
        for required in ("host", "key_file"):
            if required not in doc:
                raise SpecError("missing (a guest command logs in over SSH with a key)", where=f"{where}.{required}")
        known_hosts = _path(doc["known_hosts"], f"{where}.known_hosts") if doc.get("known_hosts") else ""
        host_key = _text(doc.get("host_key", ""), f"{where}.host_key", empty=True).strip()
        if bool(known_hosts) == bool(host_key):
            raise SpecError("give exactly one of known_hosts (a known-hosts file on the backup node) or host_key "
                            "(the guest's public host key): the guest's host key is always checked", where=where)
        if host_key and not re.fullmatch(r"(ssh-|ecdsa-|sk-)\S+ [A-Za-z0-9+/=]+(?: .*)?", host_key):
            raise SpecError("not an OpenSSH public key line ('ssh-ed25519 AAAA...')", where=f"{where}.host_key")
        port = doc.get("port", 22)
        if isinstance(port, str) and port.isdigit():
            port = int(port)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise SpecError(f"{port!r} is not a TCP port", where=f"{where}.port")
        guest = GuestTarget(host=_text(doc["host"], f"{where}.host"), key_file=_path(doc["key_file"],
                                                                                        f"{where}.key_file"),
                            known_hosts=known_hosts, host_key=host_key,
                            user=_text(doc.get("user", "root"), f"{where}.user"), port=port)
    return CommandSpec(phase=doc["phase"], run=parse_run(doc["run"], f"{where}.run"), where=place,
                       name=_text(doc.get("name", ""), f"{where}.name", empty=True),
                       timeout=parse_timeout(doc.get("timeout", DEFAULT_TIMEOUT), f"{where}.timeout"),
                       ignore_exit=parse_exit_codes(doc.get("ignore_exit"), f"{where}.ignore_exit"),
                       stderr=stderr, env=parse_env(doc.get("env"), f"{where}.env"), guest=guest)


def parse_specs(value: Any, where: str = "commands") -> list[CommandSpec]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecError("a list of commands is expected", where=where)
    return [parse_spec(item, f"{where}[{i}]") for i, item in enumerate(value)]


# The command line's short names for the mapping's keys.
CLI_ALIASES = {"ignore": "ignore_exit", "key": "key_file", "known-hosts": "known_hosts", "host-key": "host_key"}


def parse_cli(text: str, where: str = "--command") -> CommandSpec:
    """`phase=before,where=guest,host=db1,key=/etc/olvm-backup/keys/db1,known-hosts=/etc/olvm-backup/known_hosts,
    timeout=30,ignore=15,101-150,stderr=warn,env.MODE=fast -- /usr/local/bin/db-flush --all`: options, then ` -- `
    and the command (split as a shell splits it). A piece without `=` continues the value before it (the commas
    of `ignore=15,101-150`)."""
    options, sep, command = text.partition(" -- ")
    if not sep:
        options, sep, command = text.partition("--")
        if not sep or options.strip():
            raise SpecError("expected 'OPTIONS -- COMMAND', e.g. 'phase=before,timeout=30 -- /usr/bin/sync'",
                            where=where)
    doc: dict[str, Any] = {}
    env: dict[str, str] = {}
    last: str | None = None
    for piece in [p for p in options.strip().split(",") if p.strip()] if options.strip() else []:
        key, eq, value = piece.partition("=")
        key = key.strip()
        if not eq:
            if last is None:
                raise SpecError(f"{piece!r} is not key=value", where=where)
            if last.startswith("env."):
                env[last[4:]] += "," + piece
            else:
                doc[last] += "," + piece
            continue
        if key.startswith("env."):
            env[key[4:]] = value
            last = key
            continue
        key = CLI_ALIASES.get(key, key)
        if key in ("run", "env"):
            raise SpecError(f"{key!r} is not an option here (the command follows ' -- ')", where=where)
        if key in doc:
            raise SpecError(f"{key} given twice", where=where)
        doc[key] = value.strip()
        last = key
    doc["run"] = command.strip()
    if env:
        doc["env"] = env
    return parse_spec(doc, where)


def spec_to_doc(spec: CommandSpec) -> dict[str, Any]:
    """The mapping `parse_spec` reads back into an equal spec (JSON- and YAML-safe; defaults left out)."""
    doc: dict[str, Any] = {"phase": spec.phase, "where": spec.where, "run": list(spec.run)}
    if spec.name:
        doc["name"] = spec.name
    doc["timeout"] = int(spec.timeout) if spec.timeout == int(spec.timeout) else spec.timeout
    if spec.ignore_exit.text:
        doc["ignore_exit"] = spec.ignore_exit.text
    doc["stderr"] = spec.stderr
    if spec.env:
        doc["env"] = dict(spec.env)
    if spec.guest is not None:
        g = spec.guest
        doc.update(host=g.host, port=g.port, user=g.user, key_file=g.key_file)
        doc.update({"known_hosts": g.known_hosts} if g.known_hosts else {"host_key": g.host_key})
    return doc


def for_phase(specs: list[CommandSpec], phase: str) -> list[CommandSpec]:
    return [s for s in specs if s.phase == phase]
