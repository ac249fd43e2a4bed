"""Configuration, declared once: every setting with its type, default, env name and meaning.

Loaded once in `main` (defaults, then an optional YAML file, then environment
variables) and passed down; nothing deeper reads the environment.
"""
from __future__ import annotations

import dataclasses
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping
from urllib.parse import urlsplit

import yaml

from .errors import ConfigError
from .secret import Secret

CONFIG_FILE_ENV = "OLVM_CONFIG"
MIB = 1 << 20


# A setting's check: what is wrong with a value of its type, or None. Every setting has one (`free_form` when any
# value of the type will do; a test holds every setting to it), applied by load_settings; a check that reads the
# file system (`reads_files`) is applied by check_files, when a service or `up` starts.
Check = Callable[[Any], "str | None"]


def setting(default: Any, env: str, doc: str, *, check: Check | None = None, shown: str | None = None) -> Any:
    """One setting; `check` its range or shape; `shown` is how the docs write a default the value itself does not
    tell (a secret's)."""
    return field(default=default, metadata={"env": env, "doc": doc, "shown": shown, "check": check})


def free_form(value: Any) -> str | None:
    """Any value of the declared type will do (a command line, a secret, a flag)."""
    return None


def at_least(low: int | float) -> Check:
    def check(value: Any) -> str | None:
        return None if value >= low else f"must be at least {low}, not {value}"
    return check


def fraction(value: float) -> str | None:
    return None if 0 <= value < 1 else f"must be from 0 up to (not including) 1, not {value}"


def positive(value: int | float) -> str | None:
    return None if value > 0 else f"must be more than 0, not {value}"


def size(low: int, high: int, multiple: int = 1) -> Check:
    """Bytes between `low` and `high`, a multiple of `multiple`."""
    def check(value: int) -> str | None:
        if not low <= value <= high or value % multiple:
            step = f" and a multiple of {multiple}" if multiple > 1 else ""
            return f"must be {low} to {high} bytes{step}, not {value}"
        return None
    return check


def one_of(*choices: str) -> Check:
    def check(value: str) -> str | None:
        return None if value.upper() in choices else f"must be one of {', '.join(choices)}, not {value!r}"
    return check


def matches(pattern: str, what: str) -> Check:
    regex = re.compile(pattern)

    def check(value: str) -> str | None:
        return None if regex.fullmatch(value) else f"must be {what}, not {value!r}"
    return check


def url(*schemes: str, empty: str = "") -> Check:
    """A URL with one of `schemes` and a host; '' too when `empty` says what it means."""
    def check(value: str) -> str | None:
        if not value and empty:
            return None
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 (raises on a port that is not a number)
        except ValueError as e:
            return f"not a URL ({e}): {value!r}"
        if parts.scheme not in schemes or not parts.hostname:
            allowed = " or ".join(f"{s}://HOST[:PORT]/..." for s in schemes)
            return f"must be a URL {allowed}{' (or empty: ' + empty + ')' if empty else ''}, not {value!r}"
        return None
    return check


def host_ports(text: str) -> list[tuple[str, int]]:
    """'host:port,host:port' (a port-less host gets Kafka's 9092; an IPv6 address in brackets) to pairs; ValueError
    on what does not parse."""
    pairs = []
    for item in text.split(","):
        m = re.fullmatch(r"\s*(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::(\d{1,5}))?\s*", item)
        port = int(m.group(2) or 9092) if m else 0
        if not m or not 0 < port < 65536:
            raise ValueError(f"{item.strip()!r} is not HOST:PORT")
        pairs.append((m.group(1).strip("[]"), port))
    return pairs


def host_port_list(value: str) -> str | None:
    try:
        host_ports(value)
    except ValueError as e:
        return f"must be HOST:PORT, comma separated: {e}"
    return None


def pem_file(value: str) -> str | None:
    """'' (none), or a readable file holding a PEM certificate."""
    if not value:
        return None
    try:
        text = Path(value).read_bytes()
    except OSError as e:
        return f"cannot read {value}: {e.strerror}"
    return None if b"-----BEGIN CERTIFICATE-----" in text else f"{value} holds no PEM certificate"


pem_file.reads_files = True  # type: ignore[attr-defined]


def readable_file(value: str) -> str | None:
    """'' (none), or a file this process can read."""
    if not value:
        return None
    try:
        with open(value, "rb"):
            return None
    except OSError as e:
        return f"cannot read {value}: {e.strerror}"


readable_file.reads_files = True  # type: ignore[attr-defined]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str = setting("127.0.0.1:19092", "OLVM_KAFKA_BOOTSTRAP",
                                     "Kafka bootstrap servers, comma separated", check=host_port_list)
    topic_prefix: str = setting("", "OLVM_KAFKA_TOPIC_PREFIX",
                                "prefix for every topic name (several installs on one cluster)",
                                check=matches(r"[A-Za-z0-9._-]*", "letters, digits, dots, hyphens or underscores"))
    replication_factor: int = setting(1, "OLVM_KAFKA_REPLICATION", "replication factor of the topics we create",
                                      check=positive)
    partitions: int = setting(4, "OLVM_KAFKA_PARTITIONS",
                              "partitions of the work topics (the readers' parallelism limit)",
                              check=positive)
    fetch_wait_ms: int = setting(100, "OLVM_KAFKA_FETCH_WAIT_MS",
                                 "longest a fetch waits at the broker for records: part of every hop's latency",
                                 check=at_least(0))


def cron_or_empty(value: str) -> str | None:
    """A cron expression (policy/model.py's rules: 5 fields or an @ alias), or '' for never."""
    from .policy.model import cron_problem

    problem = cron_problem(value) if value else ""
    return f"must be a cron expression (or empty: never), not {value!r}: {problem}" if problem else None


@dataclass(frozen=True)
class S3Settings:
    endpoint_url: str = setting("http://127.0.0.1:19000", "OLVM_S3_ENDPOINT",
                                "S3 endpoint URL (AWS, MinIO, Ceph RGW, OCI...; '' = AWS default)",
                                check=url("http", "https", empty="AWS default"))
    bucket: str = setting("olvm-backup", "OLVM_S3_BUCKET", "bucket holding packs, manifests and the catalog",
                          check=matches(r"[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]",
                                        "a bucket name: 3 or more letters, digits, dots, hyphens or underscores"))
    access_key: Secret = setting(Secret("olvm-backup"), "OLVM_S3_ACCESS_KEY", "S3 access key id",
                                 check=free_form, shown="the embedded store's")
    secret_key: Secret = setting(Secret("olvm-backup"), "OLVM_S3_SECRET_KEY", "S3 secret access key",
                                 check=free_form, shown="the embedded store's")
    region: str = setting("us-east-1", "OLVM_S3_REGION", "S3 region",
                          check=matches(r"[A-Za-z0-9_-]+", "a region name (letters, digits, hyphens)"))
    create_bucket: bool = setting(True, "OLVM_S3_CREATE_BUCKET", "create the bucket when it is missing",
                                  check=free_form)
    # One lock for the repository until policies exist; then a policy chooses its own (issue 25).
    object_lock_days: int = setting(0, "OLVM_OBJECT_LOCK_DAYS",
                                    "days S3 Object Lock keeps each restore point's packs, indexes and manifests "
                                    "from deletion and overwrite (0 = off); the bucket must have Object Lock",
                                    check=at_least(0))
    object_lock_mode: str = setting("GOVERNANCE", "OLVM_OBJECT_LOCK_MODE",
                                    "GOVERNANCE (a user with s3:BypassGovernanceRetention may shorten or lift a "
                                    "lock) or COMPLIANCE (no one can, not even the account's root)",
                                    check=one_of("GOVERNANCE", "COMPLIANCE"))
    gc_grace: float = setting(86400.0, "OLVM_GC_GRACE",
                              "seconds a pack must exist before garbage collection may delete it (`olvm-backup gc "
                              "--grace` for one run); at least an hour, which also absorbs clock differences "
                              "between the machines writing packs", check=at_least(3600))
    gc_repack_below: float = setting(0.3, "OLVM_GC_REPACK_BELOW",
                                     "garbage collection copies the live chunks of a pack they fill less than this "
                                     "share of into a new pack, and deletes the old one (0 = never repack)",
                                     check=fraction)
    gc_schedule: str = setting("30 3 * * *", "OLVM_GC_SCHEDULE",
                               "when the active scheduler runs garbage collection: a cron expression in UTC (a run "
                               "missed while no scheduler ran is done once when one runs again; empty = never)",
                               check=cron_or_empty)


@dataclass(frozen=True)
class EngineSettings:
    url: str = setting("", "OLVM_ENGINE_URL", "engine API root, https://MANAGER/ovirt-engine/api",
                       check=url("https", "http", empty="no engine"))
    username: str = setting("admin@internal", "OLVM_ENGINE_USER", "engine user",
                            check=matches(r"\S+", "a user name (user@profile)"))
    password: Secret = setting(Secret(""), "OLVM_ENGINE_PASSWORD", "engine password",
                               check=free_form)
    ca_file: str = setting("", "OLVM_ENGINE_CA_FILE", "CA certificate of the engine and imageio (PEM)",
                           check=pem_file)
    insecure: bool = setting(False, "OLVM_ENGINE_INSECURE", "skip TLS verification (never in production)",
                             check=free_form)
    imageio_local_socket: bool = setting(True, "OLVM_IMAGEIO_LOCAL_SOCKET",
                                         "a reader or restorer on an imageio daemon's host moves disk data over its "
                                         "local socket (as imageio's own client does), not TLS", check=free_form)


@dataclass(frozen=True)
class PipelineSettings:
    chunk_size: int = setting(1 << 20, "OLVM_CHUNK_SIZE", "bytes per chunk (aligned, fixed): the dedup unit",
                              check=size(4096, 4 * MIB, multiple=4096))
    task_size: int = setting(128 << 20, "OLVM_TASK_SIZE",
                             "bytes of disk per read task: the unit readers share and redo",
                             check=positive)
    wave_bytes: int = setting(128 << 20, "OLVM_WAVE_BYTES",
                              "bytes of data to read per wave: a wave's chunks share one Kafka topic, "
                              "deleted once stored", check=positive)
    waves_in_flight: int = setting(3, "OLVM_WAVES_IN_FLIGHT",
                                   "waves read at once: with OLVM_WAVE_BYTES, bounds what the broker holds",
                                   check=positive)
    stall_timeout: float = setting(300.0, "OLVM_STALL_TIMEOUT", "seconds a backup may go without any progress",
                                   check=positive)
    pack_size: int = setting(64 << 20, "OLVM_PACK_SIZE", "bytes per pack object written by a writer",
                             check=positive)
    pre_backup_hook: str = setting("", "OLVM_PRE_BACKUP_HOOK",
                                   "node command run before every backup's snapshot or checkpoint (a pre/post "
                                   "command of phase `before`, README \"Pre/post commands\"), with $OLVM_VM and "
                                   "$OLVM_BACKUP_ID; its failure fails the backup", check=free_form)
    post_backup_hook: str = setting("", "OLVM_POST_BACKUP_HOOK",
                                    "node command run after every backup (phase `after-backup`), with "
                                    "$OLVM_RESULT (completed, failed or interrupted) too; its failure is a "
                                    "warning", check=free_form)


@dataclass(frozen=True)
class RepositorySettings:
    """What opens an encrypted repository's key (crypto/keys.py): a passphrase, a key file, or both. Files or the
    environment only, never a command-line argument."""

    password: Secret = setting(Secret(""), "OLVM_REPOSITORY_PASSWORD",
                               "passphrase opening the repository's key (OLVM_REPOSITORY_PASSWORD_FILE keeps it out "
                               "of the environment); losing every passphrase and key file loses every backup",
                               check=free_form)
    password_file: str = setting("", "OLVM_REPOSITORY_PASSWORD_FILE",
                                 "file whose first line is the repository's passphrase", check=readable_file)
    encrypt: bool = setting(True, "OLVM_REPOSITORY_ENCRYPT",
                            "whether `olvm-backup up` makes a bucket that is no repository yet an encrypted one "
                            "(false: as `olvm-backup init --no-encryption`; an existing repository keeps what it is)",
                            check=free_form)
    key_file: str = setting("", "OLVM_REPOSITORY_KEY_FILE",
                            "key file opening the repository's key (32 or more random bytes: `olvm-backup key "
                            "generate-file`); keep a copy away from the backups", check=readable_file)


def parse_instant(text: str) -> float | None:
    """'' (none), UNIX seconds, or an ISO 8601 time (UTC when it names no zone) to UNIX seconds; ValueError else."""
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    from datetime import datetime, timezone
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def instant(value: str) -> str | None:
    try:
        parse_instant(value)
    except ValueError:
        return f"must be empty, UNIX seconds or an ISO 8601 time, not {value!r}"
    return None


@dataclass(frozen=True)
class SchedulerSettings:
    """The scheduler service. The clock settings are for tests and demos: a simulated clock that starts at
    `clock_start` and runs `clock_speed` times faster than real time."""

    session_timeout_ms: int = setting(6000, "OLVM_SCHEDULER_SESSION_TIMEOUT_MS",
                                      "ms before a scheduler that stopped answering loses leadership to another "
                                      "(its consumer group's session timeout; Kafka's floor is 6000 by default)",
                                      check=at_least(1000))
    tick: float = setting(5.0, "OLVM_SCHEDULER_TICK",
                          "seconds between the active scheduler's looks at the schedules and selections",
                          check=positive)
    event_poll_interval: float = setting(5.0, "OLVM_SCHEDULER_EVENT_POLL",
                                         "seconds between the active scheduler's reads of the engine's events "
                                         "(tag attached, detached, added, removed, updated)", check=positive)
    clock_start: str = setting("", "OLVM_SCHEDULER_CLOCK_START",
                               "tests and demos: the scheduler's clock reads this time (ISO 8601 or UNIX seconds) "
                               "at OLVM_SCHEDULER_CLOCK_EPOCH; empty = real time", check=instant)
    clock_speed: float = setting(1.0, "OLVM_SCHEDULER_CLOCK_SPEED",
                                 "tests and demos: simulated seconds per real second of the clock above",
                                 check=positive)
    clock_epoch: str = setting("", "OLVM_SCHEDULER_CLOCK_EPOCH",
                               "tests and demos: the real time (ISO 8601 or UNIX seconds) at which the clock reads "
                               "OLVM_SCHEDULER_CLOCK_START; the same on every instance so they agree on the time "
                               "(empty = when the process started)", check=instant)


def port_or_off(value: int) -> str | None:
    return None if 0 <= value <= 65535 else f"must be a TCP port (1 to 65535, or 0: none), not {value}"


def tcp_port(value: int) -> str | None:
    return None if 1 <= value <= 65535 else f"must be a TCP port (1 to 65535), not {value}"


@dataclass(frozen=True)
class MetricsSettings:
    """Prometheus metrics (olvm_backup/metrics): each service process serves its own at http://HOST:PORT/metrics."""

    port: int = setting(0, "OLVM_METRICS_PORT",
                        "port this service process serves its Prometheus metrics on, at /metrics (0 = none); "
                        "`olvm-backup up` gives each service its own from OLVM_METRICS_BASE_PORT",
                        check=port_or_off)
    host: str = setting("127.0.0.1", "OLVM_METRICS_HOST",
                        "address the metrics are served on (0.0.0.0: every one, for a Prometheus on another host)",
                        check=matches(r"[A-Za-z0-9_.:-]+", "a host name or an IP address"))
    base_port: int = setting(19100, "OLVM_METRICS_BASE_PORT",
                             "`olvm-backup up`: the first of its services' metrics ports (the README's Metrics "
                             "section says which is which; 0 = no metrics)", check=port_or_off)
    lag_interval: float = setting(15.0, "OLVM_METRICS_LAG_INTERVAL",
                                  "seconds between samples of each consumer group's lag (olvm_consumer_lag)",
                                  check=positive)


@dataclass(frozen=True)
class AccessSettings:
    """Reading restore points as disks and files (olvm_backup/access): `olvm-backup files`, mounts and network
    exports."""

    cache_mb: int = setting(32, "OLVM_ACCESS_CACHE_MB",
                            "MiB of decoded chunks an open restore point disk keeps for re-reads (per disk open)",
                            check=at_least(4))
    readahead_mb: int = setting(16, "OLVM_ACCESS_READAHEAD_MB",
                                "MiB fetched ahead of a reader going forward through a restore point disk (at most "
                                "half the cache; 0 = none)", check=at_least(0))


def parse_engine_users(text: str) -> dict[str, str]:
    """'user@profile=role,...' to {user@profile: role}; ValueError on what does not parse."""
    out: dict[str, str] = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        name, _, role = item.partition("=")
        if not re.fullmatch(r"[^\s=@,]+@[^\s=@,]+", name.strip()) or role.strip() not in ("admin", "operator"):
            raise ValueError(f"{item!r} is not USER@PROFILE=admin or USER@PROFILE=operator")
        out[name.strip()] = role.strip()
    return out


def engine_user_roles(value: str) -> str | None:
    try:
        parse_engine_users(value)
    except ValueError as e:
        return f"must be USER@PROFILE=ROLE, comma separated: {e}"
    return None


@dataclass(frozen=True)
class ApiSettings:
    """The REST API and web console (services/api): where it listens, its TLS certificate, its sessions and how
    it answers wrong passwords. Its users are in `<data dir>/api/users.json` (`olvm-backup user add`)."""

    host: str = setting("127.0.0.1", "OLVM_API_HOST", "address the API and console listen on (0.0.0.0: every one)",
                        check=matches(r"[A-Za-z0-9_.:-]+", "a host name or an IP address"))
    port: int = setting(8443, "OLVM_API_PORT", "HTTPS port of the API and console (`olvm-backup up` serves them "
                        "there)", check=tcp_port)
    tls_cert: str = setting("", "OLVM_API_TLS_CERT", "the API's certificate chain (PEM); `olvm-backup up` generates "
                            "a self-signed one into the data dir when none is set", check=pem_file)
    tls_key: str = setting("", "OLVM_API_TLS_KEY", "the private key of OLVM_API_TLS_CERT (PEM)", check=readable_file)
    session_ttl: float = setting(8 * 3600.0, "OLVM_API_SESSION_TTL",
                                 "seconds a login (bearer token or console session) lasts", check=at_least(60))
    login_attempts: int = setting(5, "OLVM_API_LOGIN_ATTEMPTS",
                                  "wrong passwords in a row for a user at one client address, or from an address "
                                  "whatever the users, before logins from there are refused for "
                                  "OLVM_API_LOGIN_LOCKOUT seconds (ten times as many within that time, from "
                                  "anywhere, lock the user out everywhere)", check=positive)
    login_lockout: float = setting(300.0, "OLVM_API_LOGIN_LOCKOUT",
                                   "seconds logins stay refused after OLVM_API_LOGIN_ATTEMPTS wrong passwords",
                                   check=positive)
    engine_users: str = setting("", "OLVM_API_ENGINE_USERS",
                                "engine accounts that log in with their engine password (checked by the engine's "
                                "SSO, OLVM_ENGINE_URL), each with its role: "
                                "admin@internal=admin,ops@internal=operator; empty = local users only",
                                check=engine_user_roles)


@dataclass(frozen=True)
class Settings:
    data_dir: Path = setting(Path("data"), "OLVM_DATA_DIR",
                             "local state: embedded broker and object store, logs, run files",
                             check=free_form)
    log_level: str = setting("INFO", "OLVM_LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR",
                             check=one_of(*LOG_LEVELS))
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    s3: S3Settings = field(default_factory=S3Settings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    repository: RepositorySettings = field(default_factory=RepositorySettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    access: AccessSettings = field(default_factory=AccessSettings)
    api: ApiSettings = field(default_factory=ApiSettings)


def _convert(value: Any, kind: Any, name: str) -> Any:
    """Turn a file or env value into the declared type."""
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(f"not a boolean: {value!r}")
        if kind is Secret:
            return value if isinstance(value, Secret) else Secret(str(value))
        if kind is float and isinstance(value, str):
            return float(value)
        if kind is Path:
            return Path(value)
        return kind(value)
    except (TypeError, ValueError) as e:
        what = {int: "a whole number", float: "a number"}.get(kind)
        raise ConfigError(f"{name}: must be {what}, not {value!r}" if what else f"{name}: {e}") from None


def _build(cls: type, file_section: Mapping[str, Any], environ: Mapping[str, str], prefix: str) -> Any:
    values: dict[str, Any] = {}
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(file_section) - known
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(sorted(prefix + u for u in unknown))}")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            section = file_section.get(f.name) or {}
            if not isinstance(section, Mapping):
                raise ConfigError(f"{prefix}{f.name} must be a mapping")
            values[f.name] = _build(kind, section, environ, f"{prefix}{f.name}.")
            continue
        env = f.metadata["env"]
        name = env
        if env in environ:
            values[f.name] = _convert(environ[env], kind, env)
        elif f.name in file_section:
            name = prefix + f.name
            values[f.name] = _convert(file_section[f.name], kind, name)
        check = f.metadata["check"]
        if check is not None and not getattr(check, "reads_files", False):
            problem = check(values.get(f.name, f.default))
            if problem:
                raise ConfigError(f"{name}: {problem}")
    return cls(**values)


def load_settings(path: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Defaults, then the YAML file (`path` or $OLVM_CONFIG), then environment variables."""
    environ = os.environ if environ is None else environ
    path = path or environ.get(CONFIG_FILE_ENV)
    data: Mapping[str, Any] = {}
    if path:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as e:
            raise ConfigError(f"cannot read {path}: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {e}") from None
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path} must hold a mapping of settings")
    settings = _build(Settings, data, environ, "")
    return dataclasses.replace(settings, data_dir=settings.data_dir.expanduser().absolute())


def check_files(settings: Settings) -> None:
    """The checks that read files (a CA file that is there, readable, a certificate): run when a service or `up`
    starts, so that a missing file stops it at once with the setting and the path named, not at the first task
    (and not `config` or the commands that do not use it)."""
    for f, value in _leaves(settings):
        check = f.metadata["check"]
        if getattr(check, "reads_files", False) and (problem := check(value)):
            raise ConfigError(f"{f.metadata['env']}: {problem}")


def _leaves(obj: Any) -> Iterator[tuple[dataclasses.Field, Any]]:
    """Every setting of `obj` (sections walked into), in declaration order, with its value."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from _leaves(value)
        else:
            yield f, value


def to_environ(settings: Settings) -> dict[str, str]:
    """The environment that reproduces `settings` in a child process (secrets included: for children only)."""
    env: dict[str, str] = {}
    for f, value in _leaves(settings):
        if isinstance(value, Secret):
            value = value.reveal()
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[f.metadata["env"]] = str(value)
    return env


def _documented(default: Any) -> str:
    """A default as the docs write it: as code, sizes in MiB, nothing for an empty one."""
    if isinstance(default, bool):
        text = "true" if default else "false"
    elif isinstance(default, int) and default >= MIB and default % MIB == 0:
        return f"{default // MIB} MiB"  # a size in bytes
    elif isinstance(default, Secret):
        text = ""  # never shown; a secret with a default worth telling says so with `shown`
    elif isinstance(default, Path) and not default.is_absolute():
        text = f"./{default}"
    else:
        text = str(default)
    return f"`{text}`" if text else ""


def settings_table() -> str:
    """Every setting with its default and meaning, as the Markdown table in the README (`olvm-backup config
    --markdown`; a test holds the README to it)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for f, value in _leaves(Settings()):
        shown = f.metadata["shown"] if f.metadata["shown"] is not None else _documented(value)
        rows.append(f"| `{f.metadata['env']}` | {shown} | {f.metadata['doc']} |")
    return "\n".join(rows) + "\n"


def describe(settings: Settings) -> list[tuple[str, str, str]]:
    """(env name, shown value, doc) for every setting; secrets masked. For `status` and the docs."""
    return [(f.metadata["env"], ("***" if value else "") if isinstance(value, Secret) else str(value),
             f.metadata["doc"]) for f, value in _leaves(settings)]
