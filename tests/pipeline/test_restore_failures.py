"""Restores that cannot be done are refused with a message naming what is wrong, and leave the engine as they found
it: no new disk, no new VM, and the engine's event log shows none was made even for a while (the checks come before
any create). Each is tried several times: a disk whose create was cancelled while its engine call was in flight
used to stay behind in some tries, not all."""
from __future__ import annotations

from .test_cbt_backup import backup, restore_points

TRIES = 3
ADDED = {34: "VM", 2021: "disk", 2022: "disk"}  # the engine's events for a VM created, a disk added (or failing to)


def engine_contents(engine_view) -> tuple[dict[str, str], dict[str, str]]:
    """Every disk and VM on the engine, id -> name."""
    return engine_view.call(lambda s: ({d.id: d.name for d in s.disks_service().list()},
                                       {v.id: v.name for v in s.vms_service().list()}))


def added_since(engine_view, event_id: int) -> tuple[int, list[str]]:
    """The newest event's id, and what the engine's event log says was created after `event_id`."""
    events = engine_view.call(lambda s: s.events_service().list(from_=event_id, max=1000))
    newest = max([event_id, *(int(e.id) for e in events)])
    return newest, [f"{ADDED[e.code]}: {e.description}" for e in events if int(e.id) > event_id and e.code in ADDED]


def test_a_restore_refused_early_leaves_nothing_behind(pipeline, engine_view):
    backup(pipeline, "app1", "--exclude", "app1_os")  # two small disks: a quick backup, two disks to create
    [point] = restore_points(pipeline, "app1")
    before = engine_contents(engine_view)
    seen, _ = added_since(engine_view, 0)
    refusals = [  # (restore arguments, what the message must name)
        (("--target-vm", "no-such-vm"), "no-such-vm"),
        (("--name", "proxy1"), "proxy1"),  # a VM of that name exists
        (("--storage-domain", "no-such-sd"), "no-such-sd"),
        (("--cluster", "no-such-cluster"), "no-such-cluster"),
        (("--disk", "no-such-disk"), "no-such-disk"),
    ]
    for attempt in range(TRIES):
        for args, named in refusals:
            r = pipeline.cli("restore", point["backup_id"], "--wait", *args)
            said = r.stdout + r.stderr
            assert r.returncode != 0, f"restore {' '.join(args)} succeeded:\n{said}"
            assert named in said, f"restore {' '.join(args)}: the message does not name {named}:\n{said}"
            assert "Traceback" not in said, said
            # Refused by checks that need no change on the engine: nothing was made, not even for a moment.
            seen, added = added_since(engine_view, seen)
            assert added == [], f"try {attempt + 1}, restore {' '.join(args)} made {added}"
            disks, vms = engine_contents(engine_view)
            assert disks == before[0], (f"try {attempt + 1}, restore {' '.join(args)} left disks behind: "
                                        f"{ {k: v for k, v in disks.items() if k not in before[0]} }")
            assert vms == before[1], (f"try {attempt + 1}, restore {' '.join(args)} left VMs behind: "
                                      f"{ {k: v for k, v in vms.items() if k not in before[1]} }")
    assert engine_view.leftovers() == []

    # The same restore point still restores: nothing the refusals did stands in its way.
    r = pipeline.cli("restore", point["backup_id"], "--wait", "--name", "app1-after-refusals")
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    assert engine_view.leftovers() == []
