"""Backup policies (issue 19): which VMs are backed up, when and how.

- model.py: the Policy and its parts (Rule, Selection, Schedule), `parse_policy` (the YAML/JSON document an admin
  writes, every field checked, errors naming the field) and `policy_to_doc` (pure).
- selection.py: VmView (a VM as the selection sees it: id, name, cluster, tags), `matches` and `evaluate`: which
  VMs each policy holds now, which joined and left, and the conflicts (pure).
- schedule.py: a schedule's cron slots in its time zone, as UTC datetimes; `slot_key` (pure).
- requests.py: deterministic request ids and the BackupRequest a policy sends for a VM (pure).
- store.py: policies in the object store under `policies/<name>`; every change is a PolicyEvent on `policy.events`.
"""
