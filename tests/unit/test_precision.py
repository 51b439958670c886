"""What a target can hold: its resolution, its lengths, zero length; and the planner in step after a write.

Property tests run each writer's own wire form: the booking body the adapter would send, read
back the way the provider's answer is normalised, and ask the planner what comes next.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bookingsync.adapters.base import BookingRequest, BookingShape, Capability
from bookingsync.adapters.meetergo import SHAPE as MEETERGO
from bookingsync.adapters.meetergo import booking_body, normalise_appointment
from bookingsync.adapters.rocketlead import parse_time
from bookingsync.adapters.time_formats import iso_ms_z as wire_time
from bookingsync.adapters.wall_time import date_only
from bookingsync.models.errors import ConfigError, NormaliseError, ProviderRejected
from bookingsync.models.meeting import Meeting, MeetingStatus, Person
from bookingsync.worker import intents, precision
from bookingsync.worker.intents import Action, Mirror

MOVABLE = frozenset({Capability.CREATE, Capability.CANCEL})
NOW = datetime(2026, 1, 1, tzinfo=UTC)

instants = st.datetimes(
    min_value=datetime(2026, 1, 2), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)
lengths = st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=3))


def meeting_at(start: datetime, end: datetime) -> Meeting:
    return Meeting(
        status=MeetingStatus.SCHEDULED,
        title="Demo",
        start=start,
        end=end,
        attendee=Person(email="ann@buyer.com", name="Ann"),
    )


def meetergo_round_trip(start: datetime, end: datetime, shape: BookingShape) -> tuple[datetime, datetime]:
    """What Meetergo holds after our POST: the body's start and duration, read back as an appointment."""
    body = booking_body(
        BookingRequest(meeting=meeting_at(start, end), reference="bsw_1"),
        meeting_type_id="mt-1",
        host_ids=["h"],
        queue_id=None,
        shape=shape,
    )
    held = datetime.fromisoformat(body["start"].replace("Z", "+00:00"))
    record = normalise_appointment(
        {"id": "a1", "start": body["start"], "end": (held + timedelta(minutes=body["duration"])).isoformat()}
    )
    return record.meeting.start, record.meeting.end


def rocketlead_round_trip(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """RocketLead keeps what its slot says; the wire form is JavaScript's, milliseconds."""
    got = parse_time(wire_time(start)), parse_time(wire_time(end))
    assert got[0] is not None and got[1] is not None
    return got[0], got[1]


def plan_after(
    shape: BookingShape, start: datetime, end: datetime, held: tuple[datetime, datetime]
) -> Action:
    mirror = precision.as_planned(shape, Mirror("b-1", *held, missing=False), start, end)
    return intents.plan(live=True, start=start, end=end, now=NOW, mirror=mirror, capabilities=MOVABLE)


@settings(max_examples=200, deadline=None)
@given(instants, lengths)
def test_meetergo_canonical_to_provider_to_canonical_is_a_fixed_point_and_plans_nothing(
    start, length
) -> None:
    end = start + length
    if MEETERGO.cannot_hold(start, end) is not None:
        with pytest.raises(ProviderRejected, match="cannot hold"):
            meetergo_round_trip(start, end, MEETERGO)
        return
    held = meetergo_round_trip(start, end, MEETERGO)
    assert held == MEETERGO.held(start, end)  # what it keeps is the meeting at its resolution
    assert meetergo_round_trip(*held, MEETERGO) == held  # and booking that again changes nothing
    assert precision.in_step(MEETERGO, start, end, *held)
    assert plan_after(MEETERGO, start, end, held) is Action.NOTHING


@settings(max_examples=200, deadline=None)
@given(instants, lengths)
def test_rocketlead_round_trip_is_a_fixed_point_at_milliseconds_and_plans_nothing(start, length) -> None:
    end = start + length
    shape = BookingShape()
    held = rocketlead_round_trip(start, end)
    assert held == shape.held(start, end) and rocketlead_round_trip(*held) == held
    assert plan_after(shape, start, end, held) is Action.NOTHING


@settings(max_examples=200, deadline=None)
@given(instants, lengths, st.timedeltas(min_value=timedelta(minutes=-600), max_value=timedelta(minutes=600)))
def test_after_a_move_the_next_plan_is_nothing_and_any_real_difference_is_a_move(
    start, length, shift
) -> None:
    shape = BookingShape(resolution=timedelta(minutes=1), zero_length=True)
    old = shape.held(start, start + length)
    moved = start + shift, start + shift + length
    action = plan_after(shape, *moved, old)
    if action is Action.NOTHING:
        # Only a move the target cannot show (less than one step) leaves the booking where it is.
        assert all(abs(a - b) < shape.resolution for a, b in zip(moved, old, strict=True))
    else:
        assert action is Action.RECREATE and abs(shift) > timedelta(0)
        assert plan_after(shape, *moved, shape.held(*moved)) is Action.NOTHING


@settings(max_examples=100, deadline=None)
@given(instants, lengths)
def test_a_provider_that_rounds_to_milliseconds_is_in_step_too(start, length) -> None:
    def rounded(value: datetime) -> datetime:  # HubSpot's epoch milliseconds: round(timestamp * 1000)
        return datetime.fromtimestamp(round(value.timestamp() * 1000) / 1000, UTC)

    held = rounded(start), rounded(start + length)
    assert plan_after(BookingShape(), start, start + length, held) is Action.NOTHING


def test_the_issues_meeting_of_30_min_30_s_at_ten_past_a_quarter_second_is_in_step_after_booking() -> None:
    start = datetime(2026, 3, 10, 10, 0, 0, 250000, tzinfo=UTC)
    end = start + timedelta(minutes=30, seconds=30)
    shape = BookingShape(
        resolution=timedelta(minutes=1), durations=frozenset({timedelta(minutes=30)}), zero_length=False
    )
    body = booking_body(
        BookingRequest(meeting=meeting_at(start, end), reference="r"),
        meeting_type_id="mt",
        host_ids=["h"],
        queue_id=None,
        shape=shape,
    )
    assert (body["start"], body["duration"]) == ("2026-03-10T10:00:00Z", 30)
    assert plan_after(shape, start, end, meetergo_round_trip(start, end, shape)) is Action.NOTHING


@pytest.mark.parametrize(
    "minutes, seconds, why",
    [
        (45, 0, "lasts 45 min .* may only last 30 min, 60 min"),
        (0, 0, "starts and ends at the same instant"),
        (0, 20, "lasts 20 s, nothing at its resolution of 1 min"),
    ],
)
def test_a_meeting_the_meeting_type_cannot_hold_is_refused_with_the_reason(minutes, seconds, why) -> None:
    shape = BookingShape(
        resolution=timedelta(minutes=1),
        zero_length=False,
        durations=frozenset({timedelta(minutes=30), timedelta(minutes=60)}),
    )
    start = datetime(2026, 3, 10, 10, 0, 10, tzinfo=UTC)
    end = start + timedelta(minutes=minutes, seconds=seconds)
    reason = precision.refusal(shape, start, end, "meetergo-main")
    assert reason is not None and reason.startswith("meetergo-main cannot hold this meeting: ")
    assert __import__("re").search(why, reason)
    with pytest.raises(ProviderRejected, match=why):
        booking_body(
            BookingRequest(meeting=meeting_at(start, end), reference="r"),
            meeting_type_id="mt",
            host_ids=["h"],
            queue_id=None,
            shape=shape,
        )


def test_meetergo_durations_are_configuration_checked_as_sentences() -> None:
    import httpx

    from bookingsync.adapters.meetergo import MeetergoAdapter

    def make(durations):
        return MeetergoAdapter(
            connection_id="mg",
            base_url="https://api.meetergo.com",
            token="rgo-x",
            meeting_type_id="mt",
            host_ids=["h"],
            durations=durations,
            transport=httpx.MockTransport(lambda r: httpx.Response(500)),
        )

    assert make([30, 60]).shape.durations == frozenset({timedelta(minutes=30), timedelta(minutes=60)})
    assert make(None).shape == MEETERGO
    for bad in ([], [0], ["30"], "30", [True]):
        with pytest.raises(ConfigError, match="durations must list the meeting type's default and allowed"):
            make(bad)


@pytest.mark.parametrize("value", ["2027-10-31", " 2027-10-31 "])
def test_date_only_values_are_quarantined_with_the_reason_at_every_reader(value) -> None:
    from bookingsync.adapters.hubspot import _time as hubspot_time
    from bookingsync.adapters.leezy import _time as leezy_time

    assert date_only(value)
    with pytest.raises(NormaliseError, match="is a date without a time"):
        normalise_appointment({"id": "a1", "start": value, "end": "2027-11-01T00:00:00Z"})
    with pytest.raises(NormaliseError, match="is a date without a time"):
        leezy_time({"start_time": value}, "start_time", required=True)
    with pytest.raises(NormaliseError, match="is a date without a time"):
        hubspot_time(value, "hs_meeting_start_time", "42")
    assert not date_only("2027-10-31T00:00:00Z") and not date_only(20271031)
