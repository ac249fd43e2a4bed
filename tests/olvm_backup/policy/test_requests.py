"""A policy's backup requests: ids derived from the cause (the same whoever sends them), and the record's fields."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from olvm_backup.policy.model import parse_policy
from olvm_backup.policy.requests import (
    backup_request, join_cause, request_id, requested_by, run_cause, schedule_cause, tag_cause,
)
from olvm_backup.policy.selection import VmView
from schemas import decode, encode

POLICY = parse_policy({"name": "gold", "exclude_disks": ["*-swap"], "quiesce": False,
                       "schedules": [{"name": "nightly", "cron": "0 2 * * *", "mode": "incremental"}]})
WEB1 = VmView("id-web1", "web1", "Default", frozenset({"gold"}))
SLOT = datetime(2026, 11, 30, 2, tzinfo=timezone.utc)


def test_a_slots_request_id_is_deterministic():
    first = request_id(POLICY, POLICY.schedules[0], SLOT, WEB1.vm_id)
    assert first == request_id("gold", "nightly", SLOT.astimezone(ZoneInfo("Asia/Tokyo")), "id-web1")
    assert uuid.UUID(first).version == 5
    others = {
        request_id("silver", "nightly", SLOT, "id-web1"),
        request_id("gold", "sunday", SLOT, "id-web1"),
        request_id("gold", "nightly", datetime(2026, 12, 1, 2, tzinfo=timezone.utc), "id-web1"),
        request_id("gold", "nightly", SLOT, "id-web2"),
        request_id("gold", "tag", "event-4711", "id-web1"),
    }
    assert first not in others and len(others) == 5
    assert request_id("gold", "tag", "event-4711", "id-web1") == request_id(POLICY, "tag", "event-4711", "id-web1")


def test_the_request_carries_the_policy_and_its_cause():
    rid = request_id(POLICY, "nightly", SLOT, WEB1.vm_id)
    cause = schedule_cause(POLICY.schedules[0], SLOT)
    request = backup_request(POLICY, WEB1, mode="incremental", cause=cause, request_id=rid, now=1800000000.0)
    assert request.request_id == rid and request.vm == "id-web1" and request.mode == "incremental"
    assert request.exclude_disks == ["*-swap"] and request.quiesce is False
    assert request.policy == "gold" and request.requested_at == 1800000000.0
    assert request.requested_by == "policy gold: schedule nightly 2026-11-30T02:00Z"
    assert decode(encode(request)) == request


def test_causes_in_words():
    assert requested_by(POLICY, tag_cause("gold", "web1")) == "policy gold: tag gold attached to web1"
    assert tag_cause("gold", "web1", attached=False) == "tag gold detached from web1"
    assert requested_by("gold", run_cause("alice@host")) == "policy gold: run by alice@host"
    assert join_cause("web1") == "web1 joined"
    request = backup_request(POLICY, WEB1, cause=run_cause("alice@host"), request_id="r1", now=1.0,
                             requested_by="someone else")
    assert request.requested_by == "someone else" and request.mode == "auto"


def test_the_request_carries_the_policys_strategy():
    assert backup_request(POLICY, WEB1, cause="x", request_id="r", now=1.0).strategy == "cbt"
    snap = parse_policy({"name": "gold", "strategy": "snapshot"})
    request = backup_request(snap, WEB1, cause="x", request_id="r", now=1.0)
    assert request.strategy == "snapshot" and decode(encode(request)) == request
