"""Hypervisor snapshots olvm-backup makes and keeps on the engine: which are ours (ownership.py), the record of
each in the object store (records.py), which of a policy's a retention keeps (keeping.py), and the steps that take
and drop them (steps.py), for `olvm-backup snapshots` and the scheduler's snapshot policies."""
