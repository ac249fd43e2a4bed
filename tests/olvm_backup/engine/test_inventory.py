"""The inventory the policies select from (VMs with cluster and tag names, in one `follow` request) and the engine's
event feed (oldest first, only after the cursor, never skipping the oldest when more than a page arrived), read from
the simulator through the engine adapter; the fallback for an engine without `follow` against a stand-in."""
from __future__ import annotations

from types import SimpleNamespace

import ovirtsdk4.types as types
import pytest

from olvm_backup.config import EngineSettings
from olvm_backup.engine import Engine
from olvm_backup.engine.inventory import events_since, latest_event_id, list_vms, vm_names_in
from olvm_backup.policy.selection import VmView
from tests.sim.conftest import module_sim
from tests.sim_engine import engine_settings


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    yield from module_sim(tmp_path_factory)


@pytest.fixture(scope="module")
def system(sim):
    conn = sim.connect()
    yield conn.system_service()
    conn.close()


@pytest.fixture
async def engine(sim):
    async with Engine(engine_settings(sim)) as e:
        yield e


def vm_id(system, name: str) -> str:
    return system.vms_service().list(search=f"name={name}")[0].id


async def test_every_vm_comes_with_its_cluster_and_tag_names(engine, system):
    views = {v.name: v for v in await list_vms(engine)}
    assert sorted(views) == sorted(v.name for v in system.vms_service().list())
    assert views["web1"] == VmView(vm_id(system, "web1"), "web1", "Default", frozenset({"gold"}))
    assert views["db1"].tags == frozenset() and views["db1"].cluster == "Default"
    system.vms_service().vm_service(vm_id(system, "db1")).tags_service().add(types.Tag(name="silver"))
    assert {v.name: v.tags for v in await list_vms(engine)}["db1"] == frozenset({"silver"})


async def test_events_come_oldest_first_and_only_after_the_cursor(engine, system):
    before = await latest_event_id(engine)
    assert before == int(system.events_service().list(max=1)[0].id)
    proxy = system.vms_service().vm_service(vm_id(system, "proxy1")).tags_service()
    proxy.add(types.Tag(name="gold"))
    gold = next(g for g in proxy.list() if g.name == "gold")
    proxy.tag_service(gold.id).remove()
    events = await events_since(engine, before)
    assert [(e.id, e.code, e.vm_name) for e in events] == [(before + 1, 440, "proxy1"), (before + 2, 446, "proxy1")]
    assert events[0].description.startswith("Tag gold was attached to VM(s) proxy1 by ")
    assert events[0].time > 0
    assert await events_since(engine, before + 2) == []
    assert await latest_event_id(engine) == before + 2


async def test_more_events_than_a_page_give_the_oldest_page_first(engine, system):
    before = await latest_event_id(engine)
    made = [system.tags_service().add(types.Tag(name=f"page{i}")) for i in range(5)]
    first = await events_since(engine, before, max_events=2)
    assert [e.id for e in first] == [before + 1, before + 2]
    rest = await events_since(engine, first[-1].id, max_events=10)
    assert [e.id for e in rest] == [before + 3, before + 4, before + 5]
    assert [e.description for e in first + rest] == [f"New Tag page{i} was created by admin@internal-authz."
                                                     for i in range(5)]
    for tag in made:
        system.tags_service().tag_service(tag.id).remove()


class NoFollow(Engine):
    """An engine that ignores `follow`: VMs come with a bare cluster reference and tag links only."""

    def __init__(self) -> None:
        super().__init__(EngineSettings())
        self.requests: list[str] = []

    @property
    def system(self):
        vms = [types.Vm(id="v1", name="b", cluster=types.Cluster(id="c1")),
               types.Vm(id="v2", name="a", cluster=types.Cluster(id="c2"))]
        tags = {"v1": [types.Tag(name="gold")], "v2": []}
        names = {"c1": "Default", "c2": "Other"}

        def vm_service(i):
            self.requests.append(f"tags of {i}")
            return SimpleNamespace(tags_service=lambda: SimpleNamespace(list=lambda: tags[i]))

        def cluster_service(i):
            return SimpleNamespace(get=lambda: types.Cluster(id=i, name=names[i]))
        return SimpleNamespace(
            vms_service=lambda: SimpleNamespace(list=lambda **kw: self.requests.append(f"vms {kw}") or vms,
                                                vm_service=vm_service),
            clusters_service=lambda: SimpleNamespace(cluster_service=cluster_service))


async def test_an_engine_without_follow_is_read_one_vm_at_a_time():
    async with NoFollow() as engine:
        views = await list_vms(engine)
    assert views == [VmView("v2", "a", "Other", frozenset()), VmView("v1", "b", "Default", frozenset({"gold"}))]
    assert engine.requests == ["vms {'follow': 'tags,cluster'}", "tags of v1", "tags of v2"]


@pytest.mark.parametrize("text, names", [
    ("Tag gold was attached to VM(s) web1 by admin@internal-authz.", ["web1"]),
    ("Tag gold was detached from VM(s) a-1, b.2 by admin@internal-authz.", ["a-1", "b.2"]),
    ("New Tag gold was created by admin@internal-authz.", []),
])
def test_the_vms_a_tag_event_names(text, names):
    assert vm_names_in(text) == names
