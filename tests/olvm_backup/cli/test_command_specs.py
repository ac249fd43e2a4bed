"""`olvm-backup backup/restore --command` and `--commands-file`: read, checked for the job's phases, and turned into
the request's specs (fast: no process)."""
from __future__ import annotations

import pytest

from olvm_backup.cli.jobs import command_specs
from olvm_backup.cli.main import build_parser
from olvm_backup.commands import BACKUP_PHASES, RESTORE_PHASES, SpecError


def test_the_one_line_form_and_a_file_make_the_requests_specs(tmp_path):
    spec_file = tmp_path / "db1.yaml"
    spec_file.write_text("commands:\n  - {phase: after, where: guest, run: [db-resume], host: db1, "
                         "key_file: /etc/olvm-backup/keys/db1, known_hosts: /etc/olvm-backup/known_hosts/db1}\n")
    args = build_parser().parse_args(["backup", "db1", "--command", "phase=before,timeout=30 -- /usr/bin/sync -f",
                                      "--commands-file", str(spec_file)])
    specs = command_specs(args.command, args.commands_file, BACKUP_PHASES, "a backup")
    assert [(s.phase, s.where, s.run, s.timeout) for s in specs] == [
        ("before", "node", ["/usr/bin/sync", "-f"], 30.0), ("after", "guest", ["db-resume"], 300.0)]
    assert specs[1].key_file == "/etc/olvm-backup/keys/db1"


def test_a_phase_of_another_job_or_an_unreadable_file_is_refused(tmp_path):
    with pytest.raises(SpecError, match="phase after-restore is not one of a backup's"):
        command_specs(["phase=after-restore -- x"], [], BACKUP_PHASES, "a backup")
    with pytest.raises(SpecError, match="phase before is not one of a restore's"):
        command_specs(["phase=before -- x"], [], RESTORE_PHASES, "a restore")
    with pytest.raises(SpecError, match="cannot read it"):
        command_specs([], [str(tmp_path / "missing.yaml")], BACKUP_PHASES, "a backup")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {phase: before, run: x, stderr: loud}\n")
    with pytest.raises(SpecError, match=r"\[0\]\.stderr: 'loud' is not one of fail, warn, ignore"):
        command_specs([], [str(bad)], BACKUP_PHASES, "a backup")
