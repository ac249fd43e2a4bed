"""The pure parts of the simulator's guest file systems: where an inventory disk's volumes go (partitions.py) and the
trees they hold (fstree.py)."""
from __future__ import annotations

import datetime

import pytest

from sim.dataplane import fstree, partitions

MIB = 1 << 20


def volumes(*kinds: str) -> list[dict]:
    return [{"name": f"v{i}", "fs": k, "size": "8MiB"} for i, k in enumerate(kinds)]


def test_mbr_with_five_volumes_puts_the_last_two_in_an_extended_partition():
    layout = partitions.plan({"table": "mbr", "volumes": volumes("ext4", "fat", "ntfs", "ext4", "fat")}, 64 * MIB,
                             "d1")
    vols = layout["volumes"]
    assert [v["partition"] for v in vols] == [1, 2, 3, 5, 6]
    assert [v["start"] for v in vols[:3]] == [1 * MIB, 9 * MIB, 17 * MIB]
    ext = layout["extended"]
    assert ext == {"start": 25 * MIB, "size": 39 * MIB}
    # Each logical partition has its EBR in the MiB before it, inside the extended partition.
    assert vols[3]["start"] == ext["start"] + MIB and vols[4]["start"] == vols[3]["start"] + 8 * MIB + MIB
    script = partitions.sfdisk_script(layout)
    lines = script.splitlines()
    assert "label: dos" in lines
    assert lines.index(f"start={25 * MIB // 512}, size={39 * MIB // 512}, type=5") == \
        lines.index(f"start={26 * MIB // 512}, size={8 * MIB // 512}, type=83") - 1


def test_gpt_names_partitions_after_volumes_and_keeps_the_last_mib_for_the_backup_table():
    spec = {"table": "gpt", "volumes": [{"name": "data", "fs": "xfs", "size": "16MiB"},
                                        {"name": "pv", "fs": "ext4", "size": "14MiB", "lvm": {"vg": "vg", "lv": "lv"}}]}
    layout = partitions.plan(spec, 32 * MIB, "d2")
    assert [v["partition"] for v in layout["volumes"]] == [1, 2]
    script = partitions.sfdisk_script(layout)
    assert 'name="data"' in script and partitions.GPT_TYPE["lvm"] in script
    assert layout["volumes"][0]["uuid"] == partitions.plan(spec, 32 * MIB, "d2")["volumes"][0]["uuid"]
    with pytest.raises(partitions.LayoutError, match="does not fit"):
        partitions.plan(dict(spec, volumes=[dict(spec["volumes"][0], size="31MiB")]), 32 * MIB, "d2")


@pytest.mark.parametrize("spec, message", [
    ({"table": "none", "volumes": volumes("ext4", "fat")}, "exactly one volume"),
    ({"table": "gpt", "volumes": volumes("ext4") * 2}, "used twice"),
    ({"table": "gpt", "volumes": [{"name": "x", "fs": "zfs", "size": "8MiB"}]}, "fs 'zfs'"),
    ({"table": "gpt", "volumes": [{"name": "x", "fs": "xfs", "size": "8MiB"}]}, "at least 16 MiB"),
    ({"table": "gpt", "volumes": [{"name": "x", "fs": "ext4", "size": "8MiB", "lvm": {"vg": "v"}}]}, "vg and lv"),
    ({"table": "gpt", "volumes": [{"name": "x", "fs": "ext4", "size": "8MiB", "files": [{"path": "../x"}]}]},
     "without '.' or '..'"),
])
def test_a_wrong_layout_is_refused_naming_what_is_wrong(spec, message):
    with pytest.raises(partitions.LayoutError, match=message):
        partitions.plan(spec, 64 * MIB, "d3")


def test_a_tree_gets_its_parents_and_defaults_and_changes_entry_by_entry():
    tree = fstree.parse([
        {"path": "a/b/c.txt", "text": "hello", "mode": "0600",
         "mtime": datetime.datetime(2021, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc)},
        {"path": "a/link", "symlink": "b/c.txt"},
        {"path": "d/", "mode": 0o700, "mtime": "2020-01-01T00:00:00Z"},
    ])
    by_path = {e["path"]: e for e in tree}
    assert [e["path"] for e in tree] == ["a", "a/b", "a/b/c.txt", "a/link", "d"]
    assert by_path["a/b"] == {"path": "a/b", "type": "dir", "mode": 0o755, "mtime": fstree.DEFAULT_MTIME, "uid": 0,
                              "gid": 0}
    assert by_path["a/b/c.txt"]["mode"] == 0o600 and by_path["a/b/c.txt"]["mtime"] == 1620284889
    assert fstree.content(by_path["a/b/c.txt"]) == b"hello"
    assert by_path["d"]["type"] == "dir" and by_path["d"]["mtime"] == 1577836800
    assert len(fstree.content(fstree.entry({"path": "x", "pattern": "random", "seed": 1, "size": "3KiB"}))) == 3072

    replaced = fstree.put(tree, {"path": "a/b/c.txt", "text": "new"})
    assert fstree.content(next(e for e in replaced if e["path"] == "a/b/c.txt")) == b"new"
    assert [e["path"] for e in fstree.put(tree, {"path": "e/f", "text": ""})][-2:] == ["e", "e/f"]
    assert [e["path"] for e in fstree.remove(tree, "a/b")] == ["a", "a/link", "d"]
    with pytest.raises(fstree.TreeError, match="no 'zz' to remove"):
        fstree.remove(tree, "zz")
    with pytest.raises(fstree.TreeError, match="is a symlink"):
        fstree.parse([{"path": "l", "symlink": "x"}, {"path": "l/f", "text": ""}])
