"""olvm-backup: the operator's command line."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from ..config import check_files, describe, load_settings, settings_table
from ..errors import BackupError
from ..logs import setup_logging
from ..runtime import secrets_of
from ..stack.repokey import adopt_generated_password


def _up(settings, args) -> int:
    from ..stack.embedded import run_stack

    check_files(settings)  # before anything starts: a missing CA file would crash-loop readers and the restorer
    return run_stack(settings, readers=args.readers, writers=args.writers)


def _status(settings, args) -> int:
    from ..stack.status import collect

    parts = asyncio.run(collect(settings))
    width = max(len(p.part) for p in parts)
    for p in parts:
        print(f"{'ok ' if p.ok else 'DOWN'} {p.part:<{width}}  {p.where}  {p.detail}")
    return 0 if all(p.ok for p in parts) else 1


def _config(settings, args) -> int:
    if args.markdown:
        print(settings_table(), end="")
        return 0
    for env, value, doc in describe(settings):
        print(f"{env:<26} {value:<40} # {doc}")
    return 0


def _backup(settings, args) -> int:
    from ..commands import BACKUP_PHASES
    from .jobs import command_specs, request_backup

    commands = command_specs(args.command, args.commands_file, BACKUP_PHASES, "a backup")
    rc, _ = asyncio.run(request_backup(settings, args.vm, args.mode, args.exclude, not args.no_quiesce, args.wait,
                                       args.timeout, strategy=args.strategy, commands=commands))
    return rc


def _command_options(parser, phases: str) -> None:
    parser.add_argument("--command", action="append", default=[], metavar="'OPTIONS -- COMMAND'",
                        help=f"a pre/post command (repeat), e.g. 'phase=before,where=node,timeout=30 -- /usr/bin/sync'"
                             f"; phases: {phases} (README \"Pre/post commands\")")
    parser.add_argument("--commands-file", action="append", default=[], metavar="FILE",
                        help="a YAML or JSON list of pre/post commands, as a policy's `commands`")


def _backups(settings, args) -> int:
    from .listing import list_backups

    return asyncio.run(list_backups(settings, args.vm, args.json))


def _history(settings, args) -> int:
    from .history import show_history

    return asyncio.run(show_history(settings, vm=args.vm, policy=args.policy, since=args.since, as_json=args.json))


def _restore(settings, args) -> int:
    from ..commands import RESTORE_PHASES
    from .jobs import command_specs, request_restore

    commands = command_specs(args.command, args.commands_file, RESTORE_PHASES, "a restore")
    rc, _ = asyncio.run(request_restore(
        settings, args.restore_point, name=args.name, replace=args.replace, cluster=args.cluster,
        storage_domain=args.storage_domain, disks=args.disk, target_vm=args.target_vm, power_on=args.power_on,
        keep_failed=args.keep_failed, wait=args.wait, timeout=args.timeout, commands=commands))
    return rc


def _export(settings, args) -> int:
    from .checks import export_restore_point_disk

    return asyncio.run(export_restore_point_disk(settings, args.restore_point, args.disk, args.output))


def _forget(settings, args) -> int:
    from .checks import forget_restore_point

    return asyncio.run(forget_restore_point(settings, args.restore_point, args.dry_run))


def _prune(settings, args) -> int:
    from .pruning import rules_from_args, run_prune

    return asyncio.run(run_prune(settings, vm=args.vm, policy=args.policy, rules=rules_from_args(args),
                                 dry_run=args.dry_run))


def _protect(settings, args) -> int:
    from .pruning import run_protect, run_unprotect

    if args.command == "unprotect":
        return asyncio.run(run_unprotect(settings, args.restore_point))
    return asyncio.run(run_protect(settings, args.restore_point, args.note))


def _gc(settings, args) -> int:
    from .pruning import run_gc

    return asyncio.run(run_gc(settings, dry_run=args.dry_run, grace=args.grace, wait=args.wait,
                              repack_below=args.repack_below))


def _add_prune_parsers(sub) -> None:
    prune = sub.add_parser("prune", help="take out of the catalog the restore points retention rules no longer keep "
                           "(never a VM's newest, a protected one or one in use); their data goes with gc",
                           description="Rules as Proxmox Backup Server and restic have them: a restore point kept by "
                           "any rule stays. Every removal is published on repository.events.")
    which = prune.add_mutually_exclusive_group()
    which.add_argument("--vm", help="only this VM (name or id; default: every VM)")
    which.add_argument("--policy", help="the VMs the policy holds, with its `retention` rules")
    prune.add_argument("--keep-last", type=int, metavar="N", help="keep the N newest restore points")
    for name, period in (("hourly", "hour"), ("daily", "day"), ("weekly", "ISO week"), ("monthly", "month"),
                         ("yearly", "year")):
        prune.add_argument(f"--keep-{name}", type=int, metavar="N",
                           help=f"keep the newest restore point of each of the N latest {period}s that have one")
    prune.add_argument("--keep-within", metavar="AGE", help="keep every restore point within AGE of the VM's newest "
                       "(30m, 36h, 7d, 2w, 1y)")
    prune.add_argument("--dry-run", action="store_true", help="show what would be kept and removed, and why")
    prune.set_defaults(func=_prune)

    protect = sub.add_parser("protect", help="keep a restore point whatever prune's rules say")
    protect.add_argument("restore_point", help="restore point (backup) id")
    protect.add_argument("--note", default="", help="why (stored in clear, also in an encrypted repository)")
    protect.set_defaults(func=_protect)
    unprotect = sub.add_parser("unprotect", help="let prune's rules apply to a protected restore point again")
    unprotect.add_argument("restore_point", help="restore point (backup) id")
    unprotect.set_defaults(func=_protect)

    gc = sub.add_parser("gc", help="delete the packs no restore point names any more (safe while backups run "
                        "elsewhere); exit 3 when backups running since its mark have not ended in --wait")
    gc.add_argument("--dry-run", action="store_true", help="say which packs would be deleted; delete nothing")
    gc.add_argument("--grace", metavar="AGE", help="only packs older than AGE (default OLVM_GC_GRACE, a day)")
    gc.add_argument("--repack-below", type=float, metavar="SHARE",
                    help="repack packs whose live chunks fill less than SHARE of them (default OLVM_GC_REPACK_BELOW, "
                         "0.3; 0 = never)")
    gc.add_argument("--wait", metavar="AGE", default="10m",
                    help="how long to wait for backups running since the mark to end (default 10m)")
    gc.set_defaults(func=_gc)


def _verify(settings, args) -> int:
    from .checks import verify_restore_point

    return asyncio.run(verify_restore_point(settings, args.restore_point))


def _init(settings, args) -> int:
    from .keys import init

    return asyncio.run(init(settings, encrypt=not args.no_encryption, label=args.label))


def _key(settings, args) -> int:
    from . import keys

    if args.key_command == "generate-file":
        return keys.generate_file(args.path)
    if args.key_command == "list":
        return asyncio.run(keys.list_keys(settings))
    if args.key_command == "add":
        return asyncio.run(keys.add_key(settings, args))
    if args.key_command == "remove":
        return asyncio.run(keys.remove_key(settings, args))
    return asyncio.run(keys.change_passphrase(settings, args))


def _policy(settings, args) -> int:
    from . import policies

    command = args.policy_command
    if command == "create":
        return asyncio.run(policies.create(settings, args.name, args.file))
    if command == "edit":
        return asyncio.run(policies.edit(settings, args.name, args.file))
    if command == "list":
        return asyncio.run(policies.list_all(settings))
    if command == "show":
        return asyncio.run(policies.show(settings, args.name))
    if command == "delete":
        return asyncio.run(policies.delete(settings, args.name))
    if command == "assign":
        return asyncio.run(policies.assign(settings, args.name, args.vm))
    if command == "unassign":
        return asyncio.run(policies.unassign(settings, args.name, args.vm))
    return asyncio.run(policies.run(settings, args.name, args.mode))


def _add_policy_parsers(sub) -> None:
    policy = sub.add_parser("policy", help="backup policies: which VMs (by tag, name pattern or explicitly), when "
                            "(cron schedules) and how; create, list, show, edit, delete, assign, unassign, run",
                            description="A policy is a YAML document (the README's \"Policies\"). Every change is "
                            "published on policy.events with who made it.")
    policy.set_defaults(func=_policy)
    commands = policy.add_subparsers(dest="policy_command", required=True)
    for verb, what in (("create", "create a policy from a YAML file"),
                       ("edit", "replace a policy by the YAML file (the VMs its selection assigned are kept)")):
        p = commands.add_parser(verb, help=what)
        p.add_argument("name", help="the policy's name")
        p.add_argument("--file", "-f", required=True, metavar="POLICY.yaml", help="the policy document; - for stdin")
    commands.add_parser("list", help="every policy, with its next run")
    show = commands.add_parser("show", help="a policy, the VMs it selects now (asks the engine) and each "
                               "schedule's next run")
    show.add_argument("name")
    delete = commands.add_parser("delete", help="delete a policy (its restore points stay)")
    delete.add_argument("name")
    for verb, what in (("assign", "assign a VM to the policy explicitly (a VM belongs to at most one policy)"),
                       ("unassign", "take back an explicit assignment")):
        p = commands.add_parser(verb, help=what)
        p.add_argument("name", help="the policy's name")
        p.add_argument("vm", help="VM name or id")
    run = commands.add_parser("run", help="back up every VM the policy holds now (a hypervisor-snapshots policy: "
                              "take their snapshots and apply its retention to them)")
    run.add_argument("name")
    run.add_argument("--mode", choices=["auto", "full", "incremental"], default=None,
                     help="default auto: incremental from each VM's last restore point when possible")


def _snapshots(settings, args) -> int:
    from . import snapshots

    command = args.snapshot_command
    if command == "list":
        return asyncio.run(snapshots.list_snapshots(settings, args.vm, args.json))
    if command == "create":
        return asyncio.run(snapshots.create(settings, args.vm, args.description, args.quiesce))
    if command == "remove":
        return asyncio.run(snapshots.remove(settings, args.vm, args.snapshot, args.force))
    if command == "revert":
        return asyncio.run(snapshots.revert_to(settings, args.vm, args.snapshot, args.force))
    return asyncio.run(snapshots.clone_from(settings, args.vm, args.snapshot, args.name, args.force))


def _add_snapshot_parsers(sub) -> None:
    snaps = sub.add_parser("snapshots", help="a VM's snapshots on the engine: list, create, remove, revert, clone",
                           description="Ours are the snapshots olvm-backup made (its description and correlation id, "
                           "recorded in the repository); remove leaves any other alone unless --force. Revert and "
                           "clone need the VM down, or --force.")
    snaps.add_argument("vm", help="VM name or id")
    snaps.set_defaults(func=_snapshots)
    commands = snaps.add_subparsers(dest="snapshot_command", required=True)
    listing = commands.add_parser("list", help="id, date, status, whether ours, disks and description of each")
    listing.add_argument("--json", action="store_true", help="print them as JSON")
    create = commands.add_parser("create", help="take a snapshot (ours: recorded in the repository)")
    create.add_argument("--description", default="", help="words added to the snapshot's description")
    create.add_argument("--quiesce", action="store_true", help="require the guest's file systems frozen when a "
                        "guest agent runs (the snapshot is removed again if the engine could not)")
    remove = commands.add_parser("remove", help="remove one of our snapshots and wait until its layer is merged")
    remove.add_argument("snapshot", help="snapshot id (or its exact description)")
    remove.add_argument("--force", action="store_true", help="remove it even though olvm-backup did not make it")
    revert = commands.add_parser("revert", help="revert the VM to a snapshot (the VM must be down; the engine "
                                 "removes the snapshots taken after it)")
    revert.add_argument("snapshot", help="snapshot id (or its exact description)")
    revert.add_argument("--force", action="store_true", help="power the VM off first if it runs (not a clean "
                        "shutdown: what the guest has not written is lost)")
    clone = commands.add_parser("clone", help="a new VM from a snapshot: its disks copied, its configuration")
    clone.add_argument("snapshot", help="snapshot id (or its exact description)")
    clone.add_argument("--name", required=True, help="the new VM's name")
    clone.add_argument("--force", action="store_true", help="clone while the VM runs (the snapshot does not change)")


def _add_key_parsers(sub) -> None:
    loss = ("Losing every passphrase and key file of an encrypted repository loses every backup in it: nobody can "
            "recover them. Passphrases come from files or a terminal, never from arguments.")
    init = sub.add_parser("init", help="make the bucket a repository: encrypted (AES-256-GCM) by default, its key "
                          "opened by the configured passphrase or key file", description=loss)
    init.add_argument("--no-encryption", action="store_true",
                      help="store backups in clear (anyone who reads the bucket reads them)")
    init.add_argument("--label", default="", help="a name for the first key (who holds it, where it is kept)")
    init.set_defaults(func=_init)

    key = sub.add_parser("key", help="the keys that open an encrypted repository: list, add, remove, passwd",
                         description=loss + " add, remove and passwd open the repository with the configured "
                         "passphrase or key file first.")
    key.set_defaults(func=_key)
    keys = key.add_subparsers(dest="key_command", required=True)
    keys.add_parser("list", help="every key; * marks those the configured passphrase or key file opens")
    # No abbreviations: `--new-password SECRET` must be refused, not taken for --new-password-file.
    add = keys.add_parser("add", allow_abbrev=False, help="another passphrase or key file for the same repository "
                          "key (typed twice when neither file is given)")
    new = add.add_mutually_exclusive_group()
    new.add_argument("--new-password-file", metavar="FILE", help="file whose first line is the new passphrase")
    new.add_argument("--new-key-file", metavar="FILE", help="key file (`olvm-backup key generate-file`)")
    add.add_argument("--label", default="", help="a name for the new key (who holds it, where it is kept)")
    remove = keys.add_parser("remove", help="remove a key. Never the last one; the one the configured passphrase "
                             "or key file opens only with --force (configure another key first)")
    remove.add_argument("id", help="the key's id (`olvm-backup key list`)")
    remove.add_argument("--force", action="store_true",
                        help="remove it even though it is the key this configuration opens with")
    passwd = keys.add_parser("passwd", allow_abbrev=False, help="replace the key the configured passphrase opens "
                             "by a new passphrase (written before the old one is removed)")
    passwd.add_argument("--new-password-file", metavar="FILE", help="file whose first line is the new passphrase "
                        "(default: typed twice)")
    generate = keys.add_parser("generate-file", help="write a new key file of 32 random bytes (mode 0600), "
                               "then `key add --new-key-file`")
    generate.add_argument("path", help="where; an existing file is never replaced")


def _add_serving_parsers(sub) -> None:
    from .serving import add_parsers  # serve and mount: their own module (cli/serving.py)

    add_parsers(sub)


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

    backup = sub.add_parser("backup", help="back a VM up (full, then incremental)")
    backup.add_argument("vm", help="VM name or id")
    backup.add_argument("--mode", choices=["auto", "full", "incremental"], default="auto",
                        help="auto (default): incremental from the last restore point when possible")
    backup.add_argument("--exclude", action="append", default=[], metavar="DISK", help="disk name or id to skip")
    backup.add_argument("--strategy", choices=["cbt", "snapshot"], default="cbt",
                        help="cbt (default): the engine's incremental backup (checkpoints); snapshot: a VM snapshot "
                             "kept on the engine, its volumes downloaded (incrementals read the layers written since)")
    backup.add_argument("--no-quiesce", action="store_true",
                        help="do not require the guest's file systems frozen (the engine still freezes them if it can)")
    _command_options(backup, "before, after, after-backup")
    backup.add_argument("--wait", action="store_true", help="follow progress until the backup ends")
    backup.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the end (with --wait)")
    backup.set_defaults(func=_backup)

    backups = sub.add_parser("backups", help="list restore points (from the object store: the catalog)")
    backups.add_argument("vm", nargs="?", help="only this VM (name or id)")
    backups.add_argument("--json", action="store_true", help="print the restore points as JSON")
    backups.set_defaults(func=_backups)

    restore = sub.add_parser("restore", help="restore a VM (or some of its disks) from a restore point")
    restore.add_argument("restore_point", help="restore point (backup) id, see `olvm-backup backups`")
    target = restore.add_mutually_exclusive_group()
    target.add_argument("--name", help="name of the new VM (default: <original>-restored)")
    target.add_argument("--replace", action="store_true",
                        help="replace the original VM, keeping its id (removed only once the restored disks hold "
                             "their data)")
    target.add_argument("--target-vm", help="restore the disks into this existing VM instead of a new one")
    restore.add_argument("--cluster", help="target cluster (default: the original)")
    restore.add_argument("--storage-domain", help="target storage domain (default: each disk's original)")
    restore.add_argument("--disk", action="append", default=[], metavar="DISK", help="only this disk (repeat)")
    restore.add_argument("--power-on", action="store_true", help="start the VM after the restore")
    restore.add_argument("--keep-failed", action="store_true", help="keep a half-restored VM for inspection")
    _command_options(restore, "before-restore, after-restore")
    restore.add_argument("--wait", action="store_true", help="follow progress until the restore ends")
    restore.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait (with --wait)")
    restore.set_defaults(func=_restore)

    verify = sub.add_parser("verify", help="read every chunk of a restore point and check it; exit 1 on damage")
    verify.add_argument("restore_point", help="restore point (backup) id")
    verify.set_defaults(func=_verify)

    forget = sub.add_parser("forget", help="take one restore point out of the catalog (refused while S3 Object Lock "
                            "holds it); its data goes only with garbage collection")
    forget.add_argument("restore_point", help="restore point (backup) id")
    forget.add_argument("--dry-run", action="store_true", help="say what would be forgotten, and its lock")
    forget.set_defaults(func=_forget)

    export = sub.add_parser("export", help="write one disk of a restore point to a local raw image file")
    export.add_argument("restore_point")
    export.add_argument("--disk", required=True, help="disk name or id")
    export.add_argument("--output", required=True, help="file to write (sparse raw)")
    export.set_defaults(func=_export)

    history = sub.add_parser("history", help="what was requested, run, restored and changed, newest first, with "
                             "who or what asked (the audit trail in the object store)")
    history.add_argument("--vm", help="only this VM (name or id)")
    history.add_argument("--policy", help="only this policy")
    history.add_argument("--since", metavar="AGE", help="only the last AGE: 30m, 12h, 7d, 2w")
    history.add_argument("--json", action="store_true", help="print the entries as JSON")
    history.set_defaults(func=_history)

    _add_key_parsers(sub)
    _add_prune_parsers(sub)
    _add_policy_parsers(sub)
    from .files import add_files_parser
    add_files_parser(sub)
    _add_serving_parsers(sub)
    _add_snapshot_parsers(sub)
    from .users import add_user_parser
    add_user_parser(sub)

    config = sub.add_parser("config", help="show the effective settings (secrets masked)")
    config.add_argument("--markdown", action="store_true",
                        help="print every setting with its default as a Markdown table instead (the README's)")
    config.set_defaults(func=_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = adopt_generated_password(load_settings(args.config))  # the passphrase `up` made, if any
        setup_logging(settings.log_level, "olvm-backup", secrets_of(settings))
        if settings.log_level.upper() != "DEBUG":
            # The CLI says itself when the broker does not answer (kafka/probe.py); the client's own errors would
            # flood the terminal, about ten lines a second, while it follows a job.
            logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
        return args.func(settings, args)
    except BackupError as e:
        print(f"olvm-backup: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a file named on the command line, a connection no adapter owns: not a bug to trace
        print(f"olvm-backup: {e}", file=sys.stderr)
        return 1
    except Exception as e:
        from aiokafka.errors import KafkaError  # here: `config` does not load the Kafka client
        if not isinstance(e, KafkaError):
            raise  # a bug: its traceback is what a report needs
        print(f"olvm-backup: Kafka: {e} (is the stack up? `olvm-backup status`)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
