"""Tag triggers, pure: the backup an on_join policy asks for a VM that joined, with an id from the engine event."""
from __future__ import annotations

from datetime import datetime, timezone

from olvm_backup.engine.inventory import EngineEvent
from olvm_backup.policy.model import Policy, Rule, Selection
from olvm_backup.policy.selection import VmView
from services.scheduler.triggers import join_requests

NOW = datetime(2024, 3, 1, 3, 12, tzinfo=timezone.utc)
WEB1 = VmView("id-web1", "web1", "c1", frozenset({"gold"}))
GOLD = Policy(name="gold", selection=Selection(include=[Rule(tag="gold")]), assignment="assign", on_join=True)
ATTACH = EngineEvent(id=1234, code=440, time=0.0, description="Tag gold was attached to VM(s) web1 by admin@internal.")


def test_a_join_by_a_tag_event_asks_with_an_id_from_the_event():
    [request] = join_requests(GOLD, [WEB1], [ATTACH], NOW)
    assert request.requested_by == "policy gold: tag gold attached to web1 (engine event 1234)"
    assert request.vm == "id-web1" and request.policy == "gold"
    [again] = join_requests(GOLD, [WEB1], [ATTACH], datetime(2024, 3, 2, tzinfo=timezone.utc))
    assert again.request_id == request.request_id  # the same event replayed asks for nothing new
    other = EngineEvent(id=1300, code=440, time=0.0, description=ATTACH.description)
    assert join_requests(GOLD, [WEB1], [other], NOW)[0].request_id != request.request_id


def test_a_join_no_event_explains_is_a_join_and_a_policy_without_on_join_asks_nothing():
    [request] = join_requests(GOLD, [WEB1], [], NOW)
    assert request.requested_by == "policy gold: web1 joined"
    assert join_requests(Policy(name="gold", assignment="assign"), [WEB1], [ATTACH], NOW) == []
