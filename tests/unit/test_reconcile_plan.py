"""The mirroring decision, pure: which one step brings a target in line with the meeting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bookingsync.adapters.base import Capability
from bookingsync.worker.config import parse_config
from bookingsync.worker.intents import Action, Mirror, plan
from bookingsync.worker.reconcile import targets_for

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
START, END = NOW + timedelta(hours=1), NOW + timedelta(hours=2)
ALL = frozenset({Capability.CREATE, Capability.RESCHEDULE, Capability.CANCEL})
NO_MOVE = frozenset({Capability.CREATE, Capability.CANCEL})


def mirror(start: datetime = START, end: datetime = END, missing: bool = False) -> Mirror:
    return Mirror("ext-1", start, end, missing)


@pytest.mark.parametrize(
    ("live", "current", "caps", "expected"),
    [
        (True, None, ALL, Action.CREATE),
        (True, mirror(), ALL, Action.NOTHING),
        (True, mirror(start=START - timedelta(minutes=30)), ALL, Action.RESCHEDULE),
        (True, mirror(start=START - timedelta(minutes=30)), NO_MOVE, Action.RECREATE),
        (
            True,
            mirror(start=START - timedelta(minutes=30)),
            frozenset({Capability.CREATE}),
            Action.UNSUPPORTED,
        ),
        (True, mirror(missing=True), ALL, Action.CREATE),
        (False, mirror(), ALL, Action.CANCEL),
        (False, mirror(missing=True), ALL, Action.NOTHING),
        (False, None, ALL, Action.NOTHING),
        (False, mirror(), frozenset({Capability.CREATE}), Action.UNSUPPORTED),
        (True, None, frozenset(), Action.UNSUPPORTED),
    ],
)
def test_plan(live: bool, current: Mirror | None, caps: frozenset[Capability], expected: Action) -> None:
    assert plan(live=live, start=START, end=END, now=NOW, mirror=current, capabilities=caps) is expected


def test_a_meeting_already_over_is_not_mirrored() -> None:
    assert (
        plan(
            live=True,
            start=NOW - timedelta(hours=2),
            end=NOW - timedelta(hours=1),
            now=NOW,
            mirror=None,
            capabilities=ALL,
        )
        is Action.NOTHING
    )


def test_route_targets_follow_the_origin_and_never_point_back() -> None:
    cfg = parse_config(
        {
            "connections": [
                {"id": "a", "provider": "leezy", "base_url": "http://a", "token": "t1"},
                {
                    "id": "b",
                    "provider": "leandata",
                    "base_url": "http://b",
                    "api_key": "k1",
                    "options": {"link_id": "L1"},
                },
                {
                    "id": "c",
                    "provider": "leandata",
                    "base_url": "http://c",
                    "api_key": "k2",
                    "options": {"link_id": "L2"},
                },
            ],
            "routes": [{"sources": ["a"], "targets": ["b", "c"]}, {"sources": ["b"], "targets": ["b", "c"]}],
        },
        environ={},
    )
    assert targets_for(cfg, "a", "meeting.booked") == ["route:b", "route:c"]
    assert targets_for(cfg, "b", "meeting.deleted") == ["route:c"]
    assert targets_for(cfg, "c", "meeting.booked") == []
    assert targets_for(cfg, "a", "meeting.hasStarted") == []  # timers change nothing at a target
    assert targets_for(cfg, None, "meeting.booked") == []
