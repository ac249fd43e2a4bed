"""Which VMs a policy selects and holds: name-regex and tag rules, exclude wins, the cluster filter, the three
assignment modes, joined/left against the stored `assigned`, and conflicts reported by the documented rule."""
from __future__ import annotations

from dataclasses import replace

from olvm_backup.policy.model import Policy, Rule, Selection, parse_policy
from olvm_backup.policy.selection import VmView, evaluate, matches, resolve


def vm(name: str, cluster: str = "Default", *tags: str) -> VmView:
    return VmView(vm_id=f"id-{name}", name=name, cluster=cluster, tags=frozenset(tags))


INVENTORY = [
    vm("web-01", "Default", "gold"), vm("web-02"), vm("web-03", "Edge"), vm("web-01-test"), vm("web-02-test"),
    vm("webmail"), vm("web"), vm("my-web-01"), vm("db-01", "Default", "gold"), vm("db-02", "Default", "silver"),
    vm("db-01-test", "Default", "gold"), vm("cache-01"), vm("cache-02", "Edge", "gold"), vm("build-01"),
    vm("build-02"), vm("WEB-04"), vm("web-05", "Edge", "nobackup"), vm("dns-01", "Edge"), vm("mail-01"),
    vm("proxy-01", "Edge", "silver"), vm("web-06", "Default", "gold", "nobackup"),
]
BY_NAME = {v.name: v for v in INVENTORY}


def names(vms) -> list[str]:
    return sorted(v.name for v in vms)


def web_policy(**changes) -> Policy:
    policy = parse_policy({
        "name": "web",
        "selection": {"include": [{"name": r"web-\d+"}], "exclude": [{"name": ".*-test"}, {"tag": "nobackup"}]},
        "assignment": "assign_and_remove",
    })
    return replace(policy, **changes)


def test_a_name_regex_include_with_an_exclude_rule_selects_exactly_the_expected_vms():
    assert len(INVENTORY) >= 20
    selected = [v for v in INVENTORY if matches(web_policy(), v)]
    # fullmatch: not web-01-test (excluded anyway), not webmail, web, my-web-01, WEB-04 (case counts);
    # web-05 and web-06 carry `nobackup`, an exclude rule: exclude wins over the include.
    assert names(selected) == ["web-01", "web-02", "web-03"]


def test_the_name_regex_matches_the_whole_name():
    policy = replace(web_policy(), selection=Selection(include=[Rule(name="web")]))
    assert names(v for v in INVENTORY if matches(policy, v)) == ["web"]
    policy = replace(web_policy(), selection=Selection(include=[Rule(name="(?i)web-.*")]))
    assert "WEB-04" in names(v for v in INVENTORY if matches(policy, v))


def test_tag_include_rules_are_ored_with_name_rules_and_the_cluster_filter_applies():
    policy = parse_policy({"name": "gold", "selection": {"include": [{"tag": "gold"}, {"name": "dns-.*"}]},
                           "assignment": "assign"})
    assert names(v for v in INVENTORY if matches(policy, v)) == \
        ["cache-02", "db-01", "db-01-test", "dns-01", "web-01", "web-06"]
    edge = replace(policy, selection=replace(policy.selection, clusters=["Edge"]))
    assert names(v for v in INVENTORY if matches(edge, v)) == ["cache-02", "dns-01"]
    # A VM whose cluster the engine did not say is not in any named cluster.
    assert not matches(edge, VmView("x", "dns-09", None, frozenset()))


def test_no_include_rule_selects_nothing():
    assert not any(matches(Policy(name="empty", assignment="assign"), v) for v in INVENTORY)


def test_disabled_holds_only_its_explicit_vms():
    policy = web_policy(assignment="disabled", vms=["mail-01", "id-dns-01"], assigned=["id-web-01"])
    result = evaluate([policy], INVENTORY)["web"]
    assert names(result.holds) == ["dns-01", "mail-01"]
    assert result.assigned == [] and result.left == ["id-web-01"] and result.joined == []


def test_assign_is_sticky():
    policy = web_policy(assignment="assign")
    first = evaluate([policy], INVENTORY)["web"]
    assert names(first.joined) == ["web-01", "web-02", "web-03"] and first.left == [] and first.changed
    stored = replace(policy, assigned=first.assigned)
    # web-02 is renamed web-02-test: no longer selected, but assign keeps it.
    renamed = [replace(v, name="web-02-test2") if v.name == "web-02" else v for v in INVENTORY]
    again = evaluate([stored], renamed)["web"]
    assert "id-web-02" in again.assigned and again.left == [] and again.joined == [] and not again.changed
    assert "web-02-test2" in names(again.holds)


def test_assign_and_remove_drops_a_vm_that_no_longer_matches():
    policy = web_policy(assigned=["id-web-01", "id-web-02", "id-web-03"])
    untagged = [replace(v, tags=frozenset({"nobackup"})) if v.name == "web-02" else v for v in INVENTORY]
    result = evaluate([policy], untagged)["web"]
    assert result.left == ["id-web-02"] and result.joined == []
    assert names(result.holds) == ["web-01", "web-03"] and result.assigned == ["id-web-01", "id-web-03"]


def test_joined_and_left_compare_with_the_stored_assigned_list():
    policy = web_policy(assigned=["id-web-01", "id-gone"])
    result = evaluate([policy], INVENTORY)["web"]
    assert names(result.joined) == ["web-02", "web-03"]
    assert result.left == ["id-gone"]  # gone from the engine: it leaves
    assert result.previous == ["id-web-01", "id-gone"] and result.changed


def test_explicit_vms_are_held_and_missing_ones_reported():
    policy = web_policy(vms=["mail-01", "no-such-vm"])
    result = evaluate([policy], INVENTORY)["web"]
    assert names(result.explicit) == ["mail-01"] and result.missing == ["no-such-vm"]
    assert names(result.holds) == ["mail-01", "web-01", "web-02", "web-03"]
    assert "id-mail-01" not in result.assigned  # explicit, not assigned by the selection
    assert resolve(["id-db-01", "db-01", "x"], INVENTORY) == ([BY_NAME["db-01"]], ["x"])


def test_a_vm_already_held_keeps_its_policy_and_the_newcomer_gets_a_conflict():
    gold = parse_policy({"name": "gold", "selection": {"include": [{"tag": "gold"}]}, "assignment": "assign",
                         "assigned": ["id-web-01"]})
    # "alpha" sorts first, but gold held web-01 already.
    alpha = parse_policy({"name": "alpha", "selection": {"include": [{"name": "web-01"}]}, "assignment": "assign"})
    evaluation = evaluate([alpha, gold], INVENTORY)
    assert evaluation.owner["id-web-01"] == "gold"
    assert "id-web-01" not in evaluation["alpha"].assigned and evaluation["alpha"].joined == []
    [conflict] = evaluation["alpha"].conflicts
    assert (conflict.vm.name, conflict.policy, conflict.held_by, conflict.how) == ("web-01", "alpha", "gold",
                                                                                   "selection")
    assert "held by policy gold" in conflict.message()
    assert evaluation.conflicts == [conflict]


def test_a_vm_two_policies_select_at_once_goes_to_the_first_by_name_and_the_other_is_told():
    gold = parse_policy({"name": "gold", "selection": {"include": [{"tag": "gold"}]}, "assignment": "assign"})
    web = web_policy()
    evaluation = evaluate([web, gold], INVENTORY)
    assert evaluation.owner["id-web-01"] == "gold"
    assert names(evaluation["web"].holds) == ["web-02", "web-03"]
    assert [(c.vm.name, c.held_by) for c in evaluation["web"].conflicts] == [("web-01", "gold")]
    assert evaluation["gold"].conflicts == []


def test_explicit_assignment_wins_over_a_selection():
    gold = parse_policy({"name": "gold", "selection": {"include": [{"tag": "gold"}]}, "assignment": "assign",
                         "assigned": ["id-db-01"]})
    manual = parse_policy({"name": "manual", "vms": ["db-01"]})
    evaluation = evaluate([gold, manual], INVENTORY)
    assert evaluation.owner["id-db-01"] == "manual"
    assert "id-db-01" in evaluation["gold"].left
    assert [(c.vm.name, c.held_by, c.how) for c in evaluation["gold"].conflicts] == [("db-01", "manual",
                                                                                      "selection")]


def test_a_vm_named_explicitly_by_two_policies_is_a_conflict_for_the_second():
    a = parse_policy({"name": "a", "vms": ["db-02"]})
    b = parse_policy({"name": "b", "vms": ["id-db-02"]})
    evaluation = evaluate([b, a], INVENTORY)
    assert names(evaluation["a"].holds) == ["db-02"] and evaluation["b"].holds == []
    assert [(c.policy, c.held_by, c.how) for c in evaluation.conflicts] == [("b", "a", "explicit")]


def test_a_disabled_policy_selects_nothing_so_it_conflicts_with_nobody():
    off = parse_policy({"name": "aaa", "selection": {"include": [{"tag": "gold"}]}, "assignment": "disabled"})
    gold = parse_policy({"name": "gold", "selection": {"include": [{"tag": "gold"}]}, "assignment": "assign"})
    evaluation = evaluate([off, gold], INVENTORY)
    assert evaluation.conflicts == [] and evaluation["aaa"].holds == []
    assert "web-01" in names(evaluation["gold"].holds)
