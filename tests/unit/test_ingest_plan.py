"""The pure half of ingest (worker/ingest_plan.py): a page applied to in-memory state, no database.

Properties (issue 13): whatever order the snapshots of one meeting arrive in, the stored meeting
only ever moves forward to the newest, each applied change is announced once, and an older
snapshot is counted on its link and ignored; events due now are numbered in the order they are
planned, `booked` first.
"""

from __future__ import annotations

import copy
import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from bookingsync.models.meeting import Meeting, MeetingStatus, Person, SourceRecord
from bookingsync.worker.identity import Match
from bookingsync.worker.ingest_plan import (
    Incoming,
    LinkState,
    MeetingSlot,
    is_older,
    meetings_needed,
    plan_page,
)
from bookingsync.worker.lifecycle import Backfill

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
GRACE = timedelta(minutes=5)


def ids():
    counter = itertools.count()
    return lambda prefix: f"{prefix}_{next(counter):04d}"


def record(
    version: int,
    *,
    start_hours: float = 24,
    status: str = "scheduled",
    external_id: str = "m1",
    updated: bool = True,
) -> SourceRecord:
    start = T0 + timedelta(hours=start_hours)
    meeting = Meeting(
        status=MeetingStatus(status),
        title=f"Demo v{version}",
        start=start,
        end=start + timedelta(minutes=30),
        attendee=Person(email="p@x.com"),
    )
    return SourceRecord(
        external_id=external_id,
        meeting=meeting,
        source_updated_at=T0 + timedelta(minutes=version) if updated else None,
    )


class Store:
    """What the store would hold between pages: the planner's own output fed back in."""

    def __init__(self) -> None:
        self.links: dict[str, LinkState] = {}
        self.meetings: dict[str, MeetingSlot] = {}
        self.events: list[dict] = []
        self.new_id = ids()

    def apply(self, *incoming: Incoming, now: datetime = T0):
        plan = plan_page(
            list(incoming),
            links=self.links,
            meetings=self.meetings,
            matches={},
            connection="c",
            provider="leezy",
            now=now,
            grace=GRACE,
            backfill=Backfill.UPCOMING,
            new_id=self.new_id,
        )
        self.events += plan.render()
        for number, link in enumerate(plan.new_links, start=len(self.links) + 1):
            link.id = number
        for link in plan.links.values():
            link.written.clear()
            link.values.clear()
        self.links = plan.links
        for slot in plan.meetings.values():
            slot.created = slot.changed = False
        self.meetings = plan.meetings
        return plan


def test_an_older_snapshot_is_counted_and_ignored_an_equal_or_unordered_one_applies() -> None:
    s = Store()
    s.apply(Incoming(record(2, start_hours=25), raw={}))
    plan = s.apply(Incoming(record(1, start_hours=24), raw={}))
    assert plan.outcomes[0].stale and not plan.outcomes[0].changed
    assert s.links["m1"].stale_count == 1 and s.links["m1"].source_updated_at == T0 + timedelta(minutes=2)
    assert next(iter(s.meetings.values())).state.meeting.start == T0 + timedelta(hours=25)
    # No key on the record: nothing to order by, so it applies (and the stored key stays the newest).
    plan = s.apply(Incoming(record(0, start_hours=26, updated=False), raw={}))
    assert plan.outcomes[0].changed and plan.outcomes[0].events[0] == "meeting.rescheduled"


def test_a_moved_booking_rewrites_its_links_reading_not_the_columns_that_did_not_change() -> None:
    s = Store()
    s.apply(Incoming(record(1, start_hours=24), raw={"v": 1}))

    def written(incoming: Incoming) -> tuple[set[str], dict]:
        plan = plan_page(  # on a copy: the planner changes the states it is given
            [incoming],
            links=copy.deepcopy(s.links),
            meetings=copy.deepcopy(s.meetings),
            matches={},
            connection="c",
            provider="leezy",
            now=T0,
            grace=GRACE,
            backfill=Backfill.UPCOMING,
            new_id=s.new_id,
        )
        assert plan.outcomes[0].events[0] == "meeting.rescheduled"
        link = plan.links["m1"]
        return set(link.written), dict(link.values)

    columns, values = written(Incoming(record(2, start_hours=25), raw={"v": 2}))
    # What the provider said now, and when: written. Scope, counters and flags it left as they were: not.
    assert {"content_hash", "raw", "start", "end", "observed", "source_updated_at", "last_seen_at"} <= columns
    assert columns.isdisjoint({"scope", "missing", "stale_count", "source_delivered_at"})
    assert values["raw"] == {"v": 2} and values["start"] == T0 + timedelta(hours=25)
    # A column that does change is written, the others still not.
    columns, values = written(Incoming(record(2, start_hours=25), raw={}, delivered_at=T0))
    assert values["source_delivered_at"] == T0
    assert columns.isdisjoint({"scope", "missing", "stale_count"})


def test_webhook_records_without_updated_at_are_ordered_by_their_delivery() -> None:
    s = Store()
    later, earlier = T0 + timedelta(seconds=30), T0 + timedelta(seconds=10)
    s.apply(Incoming(record(0, start_hours=25, updated=False), raw={}, delivered_at=later))
    plan = s.apply(Incoming(record(0, start_hours=24, updated=False), raw={}, delivered_at=earlier))
    assert plan.outcomes[0].stale
    link = LinkState(
        id=1,
        meeting_id="x",
        connection="c",
        provider="p",
        external_id="m1",
        content_hash="",
        source_updated_at=T0,
        source_delivered_at=later,
    )
    # Like with like: a record with an updated_at is compared by it, not by delivery time.
    assert not is_older(link, Incoming(record(1), raw={}, delivered_at=earlier))
    assert is_older(link, Incoming(record(-1), raw={}, delivered_at=later + timedelta(hours=1)))


def test_one_page_naming_a_booking_twice_applies_both_in_order() -> None:
    s = Store()
    plan = s.apply(Incoming(record(1), raw={}), Incoming(record(2, start_hours=30), raw={}))
    assert [o.events for o in plan.outcomes] == [
        ("meeting.booked", "meeting.hasStarted", "meeting.hasEnded"),
        ("meeting.rescheduled", "meeting.hasStarted", "meeting.hasEnded"),
    ]
    assert len(s.meetings) == 1 and len(s.links) == 1
    statuses = {(e["type"], e["set_for"]): e["status"] for e in s.events}
    assert statuses[("meeting.hasStarted", T0 + timedelta(hours=24))] == "cancelled"
    assert statuses[("meeting.hasStarted", T0 + timedelta(hours=30))] == "pending"
    assert [(e["type"], e["sequence"]) for e in s.events if e["sequence"]] == [
        ("meeting.booked", 1),
        ("meeting.rescheduled", 2),
    ]
    booked = next(e for e in s.events if e["type"] == "meeting.booked")
    # The snapshot is the meeting as it was when booked, with its link.
    assert booked["payload"]["meeting"]["start"] == "2026-03-03T09:00:00.000Z"
    assert booked["payload"]["meeting"]["links"] == [
        {"connection": "c", "provider": "leezy", "external_id": "m1"}
    ]


def test_a_timer_moved_away_and_back_in_one_page_is_pending_again() -> None:
    s = Store()
    s.apply(
        Incoming(record(1), raw={}), Incoming(record(2, start_hours=30), raw={}), Incoming(record(3), raw={})
    )
    started = [e for e in s.events if e["type"] == "meeting.hasStarted"]
    assert {(e["set_for"], e["status"]) for e in started} == {
        (T0 + timedelta(hours=24), "pending"),
        (T0 + timedelta(hours=30), "cancelled"),
    }


def test_a_successor_booking_continues_the_meeting() -> None:
    s = Store()
    s.apply(Incoming(record(1, external_id="old"), raw={}))
    moved = record(2, start_hours=30, external_id="new").model_copy(update={"supersedes": "old"})
    plan = s.apply(
        Incoming(moved, raw={}), Incoming(record(3, status="cancelled", external_id="old"), raw={})
    )
    assert plan.outcomes[0].events[0] == "meeting.rescheduled"
    assert not plan.outcomes[1].changed  # the old booking's cancel is part of the move
    assert len(s.meetings) == 1 and s.links["old"].content_hash == "superseded"


# Snapshots of one meeting: version v has start 24 + v hours (every version moves it) and, for
# some, a cancel; they arrive in any order, some twice.
versions = st.lists(st.tuples(st.integers(1, 8), st.booleans()), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(arrivals=versions, page_size=st.integers(1, 4))
def test_any_arrival_order_only_moves_forward(arrivals: list[tuple[int, bool]], page_size: int) -> None:
    s = Store()
    applied: list[int] = []
    stale = 0
    incoming = [
        Incoming(
            record(v, start_hours=24 + v, status="cancelled" if cancel and v > 1 else "scheduled"),
            raw={"v": v},
        )
        for v, cancel in arrivals
    ]
    for page_no in range(0, len(incoming), page_size):
        page = incoming[page_no : page_no + page_size]
        plan = s.apply(*page, now=T0 + timedelta(seconds=page_no))
        for item, outcome in zip(page, plan.outcomes, strict=True):
            if outcome.changed:
                applied.append(item.raw["v"])
            expected_stale = bool(applied) and item.raw["v"] < max(applied) and not outcome.changed
            assert outcome.stale == expected_stale
            stale += outcome.stale
    # Forward only: the versions applied never go down, and the meeting ends at the newest.
    assert applied == sorted(applied)
    newest = max(v for v, _ in arrivals)
    [slot] = s.meetings.values()
    assert slot.state.meeting.start == T0 + timedelta(hours=24 + newest)
    assert s.links["m1"].stale_count == stale
    # Each announced move is a step forward, never back to an earlier time.
    moves = [e["payload"]["meeting"]["start"] for e in s.events if e["type"] == "meeting.rescheduled"]
    assert moves == sorted(moves) and len(moves) == len(set(moves))
    # Events due now are numbered in the order they were planned: booked is 1, then 2, 3, ...
    numbered = [e for e in s.events if e["sequence"] is not None]
    assert [e["sequence"] for e in numbered] == list(range(1, len(numbered) + 1))
    assert not numbered or numbered[0]["type"] == "meeting.booked"


def test_a_match_without_intent_links_the_record_to_the_known_meeting() -> None:
    s = Store()
    s.apply(Incoming(record(1), raw={}))
    [meeting_id] = s.meetings
    same = record(1, external_id="elsewhere-7")
    matches = {"elsewhere-7": Match(meeting_id=meeting_id, rule="attendee+start")}
    incoming = [Incoming(same, raw={})]
    assert meetings_needed(incoming, s.links, matches) == {meeting_id}
    plan = plan_page(
        incoming,
        links=s.links,
        meetings=s.meetings,
        matches=matches,
        connection="other",
        provider="leandata",
        now=T0,
        grace=GRACE,
        backfill=Backfill.UPCOMING,
        new_id=s.new_id,
    )
    # One meeting, a second link, no second booked.
    assert plan.outcomes[0].meeting_id == meeting_id and plan.outcomes[0].events == ()
    assert [link.meeting_id for link in plan.new_links] == [meeting_id] and plan.new_meetings == []


def test_a_page_that_changes_nothing_needs_no_meeting() -> None:
    s = Store()
    s.apply(Incoming(record(1), raw={}), Incoming(record(1, external_id="m2"), raw={}))
    assert (
        meetings_needed(
            [Incoming(record(1), raw={}), Incoming(record(1, external_id="m2"), raw={})], s.links, {}
        )
        == set()
    )
    moved = record(2, start_hours=30)
    assert meetings_needed([Incoming(moved, raw={})], s.links, {}) == {s.links["m1"].meeting_id}


def test_links_are_loaded_in_the_order_of_link_state_fields() -> None:
    from dataclasses import fields

    from bookingsync.worker.ingest_statements import LINK_COLUMNS

    assert tuple(f.name for f in fields(LinkState))[: len(LINK_COLUMNS)] == LINK_COLUMNS
