"""The tag event feed (issue 19): a tag attached through ovirtsdk4 reaches the feed's next poll as a 440 event naming
the VM; the cursor kept in the store makes a restarted feed neither replay nor miss events; a first start does not
replay the engine's history; `follow` hands tag events over, commits after them and tells whether it follows."""
from __future__ import annotations

import asyncio
import json

import ovirtsdk4.types as types
import pytest

from olvm_backup.config import EngineSettings
from olvm_backup.engine import Engine
from olvm_backup.engine.inventory import EngineEvent
from olvm_backup.objectstore.memory import MemoryStore
from olvm_backup.policy.tagfeed import (CURSOR_KEY, TAG_CODES, CursorError, FeedStatus, TagFeed, decode_cursor,
                                        encode_cursor, follow, tag_events)
from tests.sim.conftest import module_sim
from tests.sim_engine import engine_settings


# -- pure parts -------------------------------------------------------------------------------------------------------

def ev(i: int, code: int) -> EngineEvent:
    return EngineEvent(id=i, code=code, time=0.0, description="")


def test_only_the_engines_tag_codes_are_tag_events():
    assert TAG_CODES == {430, 432, 434, 440, 446}
    events = [ev(1, 30), ev(2, 440), ev(3, 431), ev(4, 446), ev(5, 433), ev(6, 432), ev(7, 434), ev(8, 430)]
    assert [e.id for e in tag_events(events)] == [2, 4, 6, 7, 8]


def test_a_cursor_is_read_back_as_written():
    raw = encode_cursor(1234, 1700000000.5)
    assert json.loads(raw) == {"v": [1, 0], "last_event_id": 1234, "at": 1700000000.5}
    assert decode_cursor(raw) == 1234
    assert decode_cursor(json.dumps({"v": [1, 7], "last_event_id": 3, "later": "field"}).encode()) == 3


@pytest.mark.parametrize("raw, words", [
    (b"{not json", "unreadable"), (b"[1]", "not a JSON object"), (b'{"last_event_id": 1}', "no format version"),
    (b'{"v": [2, 0], "last_event_id": 1}', "not readable by this build"),
    (b'{"v": [1, 0], "last_event_id": -1}', "non-negative"), (b'{"v": [1, 0], "last_event_id": "7"}', "integer"),
])
def test_a_cursor_that_cannot_be_read_is_refused_with_why(raw, words):
    with pytest.raises(CursorError) as raised:
        decode_cursor(raw)
    assert words in str(raised.value) and CURSOR_KEY in str(raised.value)


# -- against the simulator --------------------------------------------------------------------------------------------

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


def vm_tags(system, name: str):
    vm = system.vms_service().list(search=f"name={name}")[0]
    return system.vms_service().vm_service(vm.id).tags_service()


def detach(tags, name: str) -> None:
    tags.tag_service(next(g.id for g in tags.list() if g.name == name)).remove()


async def test_the_next_poll_sees_an_attach_and_a_restart_neither_replays_nor_misses(engine, system):
    store = MemoryStore()
    vm_tags(system, "db1").add(types.Tag(name="gold"))  # before the feed's first start: history, not replayed
    feed = TagFeed(engine, store)
    assert await feed.poll() == []
    start = decode_cursor(await store.get(CURSOR_KEY))
    assert start == int(system.events_service().list(max=1)[0].id)

    vm_tags(system, "web1").add(types.Tag(name="silver"))
    [attached] = await feed.poll()
    assert (attached.code, attached.vm_name) == (440, "web1")
    assert attached.description == "Tag silver was attached to VM(s) web1 by admin@internal-authz."
    await feed.commit()
    assert decode_cursor(await store.get(CURSOR_KEY)) == attached.id

    detach(vm_tags(system, "web1"), "silver")  # while no feed runs
    restarted = TagFeed(engine, store)
    [detached] = await restarted.poll()
    assert (detached.code, detached.vm_name, detached.id > attached.id) == (446, "web1", True)
    await restarted.commit()
    assert await TagFeed(engine, store).poll() == []


async def test_an_uncommitted_poll_is_handed_again_after_a_restart(engine, system):
    store = MemoryStore()
    feed = TagFeed(engine, store)
    await feed.poll()
    system.tags_service().add(types.Tag(name="again"))
    [added] = await feed.poll()  # read, then the scheduler dies before it commits
    assert added.code == 432
    assert [e.id for e in await TagFeed(engine, store).poll()] == [added.id]


async def test_follow_hands_tag_events_over_commits_and_tells_it_follows(engine, system):
    store = MemoryStore()
    await TagFeed(engine, store).poll()  # the cursor, before the tag below
    system.tags_service().add(types.Tag(name="followed"))
    got: list[list[EngineEvent]] = []
    told: list[FeedStatus] = []
    stop = asyncio.Event()

    async def on_tag_events(events):
        got.append(events)
        stop.set()

    await asyncio.wait_for(follow(TagFeed(engine, store), on_tag_events, interval=0.05, stop=stop,
                                  status=told.append), 30)
    assert [[(e.code, e.description) for e in batch] for batch in got] == [
        [(432, "New Tag followed was created by admin@internal-authz.")]]
    assert told[-1].following and told[-1].error is None and told[-1].last_poll_at is not None
    assert told[-1].last_event_id == got[0][0].id == decode_cursor(await store.get(CURSOR_KEY))


async def test_an_engine_out_of_reach_is_told_and_the_cursor_stays(engine):
    store = MemoryStore()
    await store.put(CURSOR_KEY, encode_cursor(7, 0.0))
    told: list[FeedStatus] = []
    stop = asyncio.Event()

    def status(s: FeedStatus) -> None:
        told.append(s)
        stop.set()

    async with Engine(EngineSettings(url="https://127.0.0.1:9/ovirt-engine/api", insecure=True), timeout=5) as down:
        await asyncio.wait_for(follow(TagFeed(down, store), lambda _: asyncio.sleep(0), interval=0.05, stop=stop,
                                      status=status), 60)
    [s] = told
    assert (s.following, s.last_event_id, s.last_poll_at) == (False, 7, None)
    assert "gave up after 3 attempt(s)" in s.error
    assert decode_cursor(await store.get(CURSOR_KEY)) == 7
