"""A backup policy: which VMs (selection rules and explicit VMs), how (strategy, disks, quiesce) and when (schedules),
and what prune keeps of their restore points (`retention`: retention.py's rules). A policy of `kind:
hypervisor-snapshots` takes VM snapshots on the engine at its slots instead, and its `retention` says which of the
snapshots it made stay (olvm_backup/snapshots/).

Pure: `parse_policy` reads the document an admin writes (YAML or JSON, see the README's "Policies"), checks every
field and raises PolicyError naming the field (`policy gold: schedules[1].cron: ...`); `policy_to_doc` writes it
back (`parse_policy(policy_to_doc(p)) == p`). Nothing here touches the store, the bus or the engine.

Selection: a VM is selected when any include rule matches it and no exclude rule does (exclude wins), and, when
`clusters` is not empty, it runs in one of those clusters. A rule names a tag (exact, case-sensitive: engine tag
names are) or a regular expression that must match the WHOLE VM name (`re.fullmatch`: `web` selects only `web`,
`web-.*` selects `web-1` and `web-db`).

Assignment modes: `disabled` holds only the explicit `vms`; `assign` adds every VM the rules select to `assigned`
and keeps it there (sticky) even once it stops matching; `assign_and_remove` keeps `assigned` equal to what the
rules select now. `assigned` is state the scheduler keeps (selection.py computes it), not something an admin writes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from olvm_backup.commands.spec import CommandSpec, SpecError, parse_run, parse_specs, spec_to_doc
from olvm_backup.errors import BackupError
from olvm_backup.retention import RetentionError, Rules, format_duration, parse_duration

# The document's "v": a major this build does not know is refused (1.1: `kind`; 1.2: `commands` and `vm_commands`,
# the pre/post commands, which replace 1.1's never-run `pre_command` and `post_command`: still read, as commands).
FORMAT = (1, 2)
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")  # policies/<name> in the store, a Kafka key, a CLI argument
NAME_RULE = "lower-case letters, digits, '-' and '_', starting with a letter or digit, at most 63"

Mode = Literal["full", "incremental", "auto"]
# What a policy does at its slots: `backup` (restore points in the repository, by `strategy`), or
# `hypervisor-snapshots` (VM snapshots kept on the engine under `retention`; nothing goes to the repository). The
# second is no backup strategy: `strategy` (how a backup reads the disks) does not apply to it.
Kind = Literal["backup", "hypervisor-snapshots"]
KINDS: tuple[str, ...] = get_args(Kind)
Assignment = Literal["disabled", "assign", "assign_and_remove"]
Strategy = Literal["cbt", "snapshot"]  # "snapshot": disk image transfer of a VM snapshot's volumes
STRATEGIES: tuple[str, ...] = get_args(Strategy)
# Known strategies this build cannot run yet: refused as "not available", not as unknown words.
LATER_STRATEGIES = ("export", "disk_attachment")
CRON_ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
MAX_WINDOW_MINUTES = 7 * 24 * 60


class PolicyError(BackupError):
    """A policy refused (a malformed field, a VM already in another policy) or not found. The message names the
    policy and the field."""

    template = "policy {policy}: {where}{reason}"

    def __init__(self, reason: str, *, policy: str = "?", field: str = "") -> None:
        super().__init__(reason, policy=policy, where=f"{field}: " if field else "")
        self.policy = policy
        self.field = field


class PolicyNotFound(PolicyError):
    template = "policy {policy}: no such policy{where}{reason}"

    def __init__(self, policy: str) -> None:
        super().__init__("", policy=policy)


@dataclass(frozen=True)
class Rule:
    """One selection rule: exactly one of `tag` (an engine tag name) or `name` (a regular expression matched
    against the whole VM name)."""

    tag: str | None = None
    name: str | None = None

    def matches(self, vm_name: str, tags: frozenset[str]) -> bool:
        if self.tag is not None:
            return self.tag in tags
        return re.fullmatch(self.name or "", vm_name) is not None


@dataclass(frozen=True)
class Selection:
    include: list[Rule] = field(default_factory=list)
    exclude: list[Rule] = field(default_factory=list)
    clusters: list[str] = field(default_factory=list)  # cluster names; empty: every cluster


@dataclass(frozen=True)
class Schedule:
    """`cron` (5 fields, or @daily and the like) in `timezone`; `window_minutes`: how late a slot missed while no
    scheduler ran may still start."""

    name: str
    cron: str
    timezone: str = "UTC"
    mode: Mode = "auto"
    window_minutes: int = 60


@dataclass(frozen=True)
class Policy:
    name: str
    kind: Kind = "backup"
    selection: Selection = field(default_factory=Selection)
    assignment: Assignment = "disabled"
    vms: list[str] = field(default_factory=list)  # explicitly assigned VMs, by id or name
    assigned: list[str] = field(default_factory=list)  # VM ids assigned by the selection (scheduler's state)
    strategy: Strategy = "cbt"
    schedules: list[Schedule] = field(default_factory=list)
    exclude_disks: list[str] = field(default_factory=list)  # fnmatch patterns on disk names
    quiesce: bool = True
    on_join: bool = False  # back up a VM as soon as it joins the policy
    # Pre/post commands (olvm_backup/commands, README "Pre/post commands"): the policy's for every VM, then each
    # VM's own (by VM name or id), in the order they run within a phase.
    commands: list[CommandSpec] = field(default_factory=list)
    vm_commands: dict[str, list[CommandSpec]] = field(default_factory=dict)
    description: str = ""
    retention: Rules = field(default_factory=Rules)  # what prune keeps of each VM's restore points; none: everything

    @property
    def selects(self) -> bool:
        """The rules assign VMs (any mode but `disabled`)."""
        return self.assignment != "disabled"

    def schedule(self, name: str) -> Schedule:
        for schedule in self.schedules:
            if schedule.name == name:
                return schedule
        raise PolicyError(f"no schedule named {name!r}", policy=self.name, field="schedules")


# --- reading ---------------------------------------------------------------------------------------------------------

POLICY_FIELDS = ("v", "name", "kind", "description", "selection", "assignment", "vms", "assigned", "strategy",
                 "schedules", "retention",
                 "exclude_disks", "quiesce", "on_join", "commands", "vm_commands", "pre_command", "post_command")
SELECTION_FIELDS = ("include", "exclude", "clusters")
RETENTION_COUNTS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
RETENTION_FIELDS = tuple(f"keep-{name}" for name in RETENTION_COUNTS) + ("keep-within",)
SCHEDULE_FIELDS = ("name", "cron", "timezone", "mode", "window_minutes")


class _Reader:
    """Checks one document, naming the policy in every error."""

    def __init__(self, policy: str) -> None:
        self.policy = policy

    def fail(self, where: str, reason: str) -> PolicyError:
        return PolicyError(reason, policy=self.policy, field=where)

    def mapping(self, value: Any, where: str, allowed: tuple[str, ...]) -> dict:
        if not isinstance(value, dict):
            raise self.fail(where, f"a mapping is expected, not {_kind(value)}")
        for key in value:
            if key not in allowed:
                raise self.fail(f"{where}.{key}" if where else str(key),
                                f"unknown field (known: {', '.join(allowed)})")
        return value

    def text(self, value: Any, where: str, *, empty: bool = True) -> str:
        if not isinstance(value, str):
            raise self.fail(where, f"a string is expected, not {_kind(value)}")
        if not empty and not value.strip():
            raise self.fail(where, "must not be empty")
        return value

    def flag(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, f"true or false is expected, not {value!r}")
        return value

    def strings(self, value: Any, where: str, *, unique: bool = True) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(where, f"a list is expected, not {_kind(value)}")
        out: list[str] = []
        for i, item in enumerate(value):
            item = self.text(item, f"{where}[{i}]", empty=False)
            if unique and item in out:
                raise self.fail(f"{where}[{i}]", f"{item!r} is listed twice")
            out.append(item)
        return out

    def choice(self, value: Any, where: str, choices: tuple[str, ...]) -> str:
        if value not in choices:
            raise self.fail(where, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def slug(self, value: Any, where: str) -> str:
        value = self.text(value, where, empty=False)
        if not NAME.match(value):
            raise self.fail(where, f"{value!r} is not a valid name ({NAME_RULE})")
        return value

    def rule(self, value: Any, where: str) -> Rule:
        value = self.mapping(value, where, ("tag", "name"))
        if len(value) != 1:
            raise self.fail(where, "a rule has exactly one of `tag` or `name`")
        if "tag" in value:
            return Rule(tag=self.text(value["tag"], f"{where}.tag", empty=False))
        pattern = self.text(value["name"], f"{where}.name", empty=False)
        try:
            re.compile(pattern)
        except re.error as e:
            raise self.fail(f"{where}.name", f"bad regular expression {pattern!r} ({e})") from None
        return Rule(name=pattern)

    def rules(self, value: Any, where: str) -> list[Rule]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(where, f"a list of rules is expected, not {_kind(value)}")
        return [self.rule(item, f"{where}[{i}]") for i, item in enumerate(value)]

    def selection(self, value: Any) -> Selection:
        if value is None:
            return Selection()
        value = self.mapping(value, "selection", SELECTION_FIELDS)
        return Selection(include=self.rules(value.get("include"), "selection.include"),
                         exclude=self.rules(value.get("exclude"), "selection.exclude"),
                         clusters=self.strings(value.get("clusters"), "selection.clusters"))

    def schedule(self, value: Any, where: str) -> Schedule:
        value = self.mapping(value, where, SCHEDULE_FIELDS)
        for required in ("name", "cron"):
            if required not in value:
                raise self.fail(f"{where}.{required}", "missing")
        name = self.slug(value["name"], f"{where}.name")
        zone = self.text(value.get("timezone", "UTC"), f"{where}.timezone", empty=False)
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise self.fail(f"{where}.timezone", f"unknown time zone {zone!r} (an IANA name, e.g. Europe/Paris)") \
                from None
        cron = self.text(value["cron"], f"{where}.cron", empty=False)
        reason = cron_problem(cron)
        if reason:
            raise self.fail(f"{where}.cron", f"{cron!r} is not a cron expression ({reason})")
        mode = self.choice(value.get("mode", "auto"), f"{where}.mode", get_args(Mode))
        window = value.get("window_minutes", 60)
        if isinstance(window, bool) or not isinstance(window, int) or not 0 <= window <= MAX_WINDOW_MINUTES:
            raise self.fail(f"{where}.window_minutes",
                            f"{window!r} is not a whole number of minutes from 0 to {MAX_WINDOW_MINUTES}")
        return Schedule(name=name, cron=cron, timezone=zone, mode=mode, window_minutes=window)  # type: ignore[arg-type]

    def schedules(self, value: Any) -> list[Schedule]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail("schedules", f"a list is expected, not {_kind(value)}")
        out: list[Schedule] = []
        for i, item in enumerate(value):
            schedule = self.schedule(item, f"schedules[{i}]")
            if any(s.name == schedule.name for s in out):
                raise self.fail(f"schedules[{i}].name", f"{schedule.name!r} is the name of another schedule")
            out.append(schedule)
        return out

    def retention(self, value: Any) -> Rules:
        """`{"keep-last": 7, "keep-daily": 14, "keep-within": "2d"}` (retention.py's rules, restic's names)."""
        if value is None:
            return Rules()
        value = self.mapping(value, "retention", RETENTION_FIELDS)
        counts: dict[str, Any] = {}
        for key, count in value.items():
            where = f"retention.{key}"
            if key == "keep-within":
                try:
                    counts["within"] = parse_duration(count) if isinstance(count, str) else parse_duration("")
                except RetentionError:
                    raise self.fail(where, f"{count!r} is not a duration: a number and one of m, h, d, w, y "
                                           "(e.g. 7d)") from None
            elif isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise self.fail(where, f"{count!r} is not a count: a whole number, 0 or more")
            else:
                counts[key.removeprefix("keep-")] = count
        return Rules(**counts)

    def commands(self, value: Any, where: str) -> list[CommandSpec]:
        try:
            return parse_specs(value, where)
        except SpecError as e:
            raise self.fail(e.where, e.reason) from None

    def vm_commands(self, value: Any) -> dict[str, list[CommandSpec]]:
        """`{VM name or id: [command, ...]}`: a VM's own commands, run after the policy's in each phase."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail("vm_commands", f"a mapping of VM names to lists of commands is expected, not "
                                           f"{_kind(value)}")
        out = {}
        for vm, specs in value.items():
            vm = self.text(vm, "vm_commands", empty=False)
            out[vm] = self.commands(specs, f"vm_commands.{vm}")
        return out

    def legacy_commands(self, doc: dict) -> list[CommandSpec]:
        """`pre_command` and `post_command` (format 1.1's one-line commands, never run before): node commands of
        the phases before and after-backup, written back as `commands`."""
        out = []
        for key, phase in (("pre_command", "before"), ("post_command", "after-backup")):
            text = self.text(doc.get(key, ""), key)
            if text.strip():
                try:
                    out.append(CommandSpec(phase=phase, run=parse_run(text, key)))  # type: ignore[arg-type]
                except SpecError as e:
                    raise self.fail(key, e.reason) from None
        return out

    def strategy(self, value: Any) -> str:
        if value not in STRATEGIES:
            later = f"; {', '.join(LATER_STRATEGIES)} are planned" if value in LATER_STRATEGIES else ""
            raise self.fail("strategy", f"{value!r} is not available ({', '.join(STRATEGIES)}{later})")
        return value


def cron_problem(cron: str) -> str:
    """Why `cron` is not a schedule this product runs ('' if it is): 5 fields (minute hour day month weekday) or
    one of the @ aliases; seconds are not a backup's granularity; it must fire at least once."""
    if cron.startswith("@"):
        if cron not in CRON_ALIASES:
            return f"the aliases are {', '.join(CRON_ALIASES)}"
    elif len(cron.split()) != 5:
        return "5 fields expected: minute hour day-of-month month day-of-week"
    try:
        croniter(cron, datetime(2000, 1, 1, tzinfo=timezone.utc)).get_next(datetime)
    except CroniterError as e:
        return str(e) or type(e).__name__
    except (ValueError, KeyError, TypeError) as e:  # croniter lets a few of its parse faults through as these
        return str(e) or type(e).__name__
    return ""


def parse_policy(doc: Any, *, name: str | None = None) -> Policy:
    """The policy a document describes, every field checked. `name`: the name the caller expects (the CLI's
    argument); the document may leave its `name` out then, and must not say another one."""
    label = name or (doc.get("name") if isinstance(doc, dict) and isinstance(doc.get("name"), str) else None) or "?"
    r = _Reader(label)
    doc = r.mapping(doc, "", POLICY_FIELDS)
    if "v" in doc:
        v = doc["v"]
        if not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool)
                                                            for x in v)):
            raise r.fail("v", f"{v!r} is not a format version [major, minor]")
        if v[0] != FORMAT[0]:
            raise r.fail("v", f"format {v[0]}.{v[1]} is not readable by this build (major {FORMAT[0]})")
    if "name" in doc:
        own = r.slug(doc["name"], "name")
        if name is not None and own != name:
            raise r.fail("name", f"the document names {own!r}")
    elif name is None:
        raise r.fail("name", "missing")
    else:
        own = name
    if name is not None:
        r.slug(name, "name")
    policy = Policy(
        name=own,
        kind=r.choice(doc.get("kind", "backup"), "kind", KINDS),  # type: ignore[arg-type]
        description=r.text(doc.get("description", ""), "description"),
        selection=r.selection(doc.get("selection")),
        assignment=r.choice(doc.get("assignment", "disabled"), "assignment", get_args(Assignment)),  # type: ignore
        vms=r.strings(doc.get("vms"), "vms"),
        assigned=r.strings(doc.get("assigned"), "assigned"),
        strategy=r.strategy(doc.get("strategy", "cbt")),  # type: ignore[arg-type]
        schedules=r.schedules(doc.get("schedules")),
        exclude_disks=r.strings(doc.get("exclude_disks"), "exclude_disks"),
        quiesce=r.flag(doc.get("quiesce", True), "quiesce"),
        on_join=r.flag(doc.get("on_join", False), "on_join"),
        commands=r.legacy_commands(doc) + r.commands(doc.get("commands"), "commands"),
        vm_commands=r.vm_commands(doc.get("vm_commands")),
        retention=r.retention(doc.get("retention")),
    )
    for where, reason in snapshot_policy_problems(policy):
        raise r.fail(where, reason)
    return policy


def snapshot_policy_problems(policy: Policy) -> list[tuple[str, str]]:
    """A hypervisor-snapshots policy only takes and removes snapshots: the fields that belong to backups must keep
    their defaults (a value there would be ignored, and an admin would believe it does something)."""
    if policy.kind != "hypervisor-snapshots":
        return []
    default = Policy(name=policy.name)
    why = "not used by a hypervisor-snapshots policy (it keeps VM snapshots on the engine and backs nothing up)"
    out = [(f, why) for f in ("strategy", "exclude_disks", "on_join", "commands", "vm_commands")
           if getattr(policy, f) != getattr(default, f)]
    out += [(f"schedules[{i}].mode", why) for i, s in enumerate(policy.schedules) if s.mode != "auto"]
    return out


def policy_to_doc(policy: Policy) -> dict[str, Any]:
    """The document `parse_policy` reads back into an equal Policy (JSON- and YAML-safe)."""

    def rule(r: Rule) -> dict[str, str]:
        return {"tag": r.tag} if r.tag is not None else {"name": r.name or ""}

    return {
        "v": list(FORMAT),
        "name": policy.name,
        **({"kind": policy.kind} if policy.kind != "backup" else {}),  # a 1.0 reader still reads a backup policy
        "description": policy.description,
        "selection": {
            "include": [rule(r) for r in policy.selection.include],
            "exclude": [rule(r) for r in policy.selection.exclude],
            "clusters": list(policy.selection.clusters),
        },
        "assignment": policy.assignment,
        "vms": list(policy.vms),
        "assigned": list(policy.assigned),
        "strategy": policy.strategy,
        "schedules": [{"name": s.name, "cron": s.cron, "timezone": s.timezone, "mode": s.mode,
                       "window_minutes": s.window_minutes} for s in policy.schedules],
        "exclude_disks": list(policy.exclude_disks),
        "quiesce": policy.quiesce,
        "on_join": policy.on_join,
        "commands": [spec_to_doc(c) for c in policy.commands],
        "vm_commands": {vm: [spec_to_doc(c) for c in specs] for vm, specs in policy.vm_commands.items()},
        "retention": retention_to_doc(policy.retention),
    }


def retention_to_doc(rules: Rules) -> dict[str, Any]:
    """The `retention` mapping of a policy document: only the rules set."""
    doc: dict[str, Any] = {f"keep-{name}": getattr(rules, name) for name in RETENTION_COUNTS if getattr(rules, name)}
    if rules.within:
        doc["keep-within"] = format_duration(rules.within)
    return doc


def changed_fields(old: Policy, new: Policy) -> list[str]:
    """The top-level fields of the document that differ, in document order (a change event's detail)."""
    before, after = policy_to_doc(old), policy_to_doc(new)
    return [key for key in after if before.get(key) != after[key]]


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)
