"""RocketLead slot matching by instant, over every IANA zone whose clocks change in 2026–2027.

The availability answers here are written the way a calendar in that zone would write them: local
wall times without an offset, ordered by time, the repeated hour listed twice. Each slot also
carries its true instant under a key the adapter never reads, so the property can check the
adapter's choice against the truth instead of against its own reading.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from bookingsync.adapters.rocketlead import AVAILABILITY_END_PADDING, AVAILABILITY_START_LOOKBACK, find_slot
from bookingsync.adapters.wall_time import readings
from tests.unit.dst_zones import dst_changes, dst_zone_keys

LENGTH = timedelta(minutes=30)
TRUTH = "_true_start"  # not a RocketLead field: the test's own record of the slot's instant


def wall(instant: datetime, zone: ZoneInfo) -> str:
    return instant.astimezone(zone).replace(tzinfo=None).isoformat(timespec="milliseconds")


def listing(
    zone: ZoneInfo, around: datetime, *, first: datetime, keep: list[bool], full: list[bool]
) -> list[dict]:
    """Slots every 30 minutes from `first`, one per `keep` flag, ordered by instant, some left out or full."""
    slots = []
    for index in range(len(keep)):
        start = first + index * LENGTH
        if not keep[index]:
            continue
        slots.append(
            {
                "resourceId": "res-1",
                "appointmentTypeId": "apt-1",
                "resourceSlotId": f"rs-{index}",
                "startDateTime": wall(start, zone),
                "endDateTime": wall(start + LENGTH, zone),
                "available": not full[index],
                TRUTH: start.isoformat(),
            }
        )
    return slots


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[ZoneInfo, datetime, list[dict], bool]:
    changes = dst_changes()
    key = draw(st.sampled_from(dst_zone_keys()))
    change = draw(st.sampled_from(changes[key]))
    zone = ZoneInfo(key)
    meeting = change + timedelta(minutes=30 * draw(st.integers(-5, 5)))
    honours_window = draw(st.booleans())  # a server listing only slots from the `start` asked, or more
    # The adapter asks from AVAILABILITY_START_LOOKBACK before the meeting, so a complete answer
    # lists both readings of a repeated hour; a server may also list from earlier still.
    asked = meeting - AVAILABILITY_START_LOOKBACK
    first = asked if honours_window else asked - timedelta(minutes=30 * draw(st.integers(0, 4)))
    # Whatever it starts from, an answer runs to the `end` asked: the meeting's end plus the padding.
    count = int((meeting + LENGTH + AVAILABILITY_END_PADDING - first) / LENGTH)
    complete = draw(st.booleans())
    keep = [True] * count if complete else draw(st.lists(st.booleans(), min_size=count, max_size=count))
    full = draw(st.lists(st.booleans(), min_size=count, max_size=count))
    return zone, meeting, listing(zone, meeting, first=first, keep=keep, full=full), complete


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_slot_matching_picks_exactly_the_slot_at_the_meetings_instant_or_refuses(scenario) -> None:
    zone, meeting, slots, complete = scenario
    chosen, full = find_slot(
        slots,
        meeting,
        meeting + LENGTH,
        resource_id="res-1",
        appointment_type_id="apt-1",
        zone=zone.key,
        earliest=meeting - AVAILABILITY_START_LOOKBACK,
    )
    if chosen is not None:
        assert datetime.fromisoformat(chosen[TRUTH]) == meeting, "booked another instant than the meeting's"
        assert chosen["available"] is True
    truth = [s for s in slots if datetime.fromisoformat(s[TRUTH]) == meeting]
    if complete and truth and truth[0]["available"]:
        # Every slot listed: the repeated hour's two listings settle each other, so nothing is refused.
        assert chosen is truth[0]
    if chosen is None and truth and truth[0]["available"]:
        assert not complete  # only a partial answer may leave the meeting's hour unsettled


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(dst_zone_keys()), st.data())
def test_every_wall_time_has_the_readings_the_zone_gives_it(key: str, data: st.DataObject) -> None:
    zone = ZoneInfo(key)
    change = data.draw(st.sampled_from(dst_changes()[key]))
    instant = change + timedelta(minutes=data.draw(st.integers(-240, 240)))
    local = instant.astimezone(zone).replace(tzinfo=None)
    found = readings(local, zone)
    assert instant in found and 1 <= len(found) <= 2
    assert all(r.astimezone(zone).replace(tzinfo=None) == local for r in found)
    # A local time the zone skips has no reading: one minute past each instant's local time,
    # shifted by the change, is either a reading of its own or none at all, never a wrong one.
    jump = change.astimezone(zone).utcoffset() - (change - timedelta(minutes=1)).astimezone(zone).utcoffset()
    skipped = local + jump
    assert all(r.astimezone(zone).replace(tzinfo=None) == skipped for r in readings(skipped, zone))


def test_berlin_2026_10_25_both_two_oclocks() -> None:
    zone = ZoneInfo("Europe/Berlin")
    first, second = datetime(2026, 10, 25, 0, tzinfo=UTC), datetime(2026, 10, 25, 1, tzinfo=UTC)
    slots = listing(zone, first, first=first, keep=[True] * 10, full=[False] * 10)
    assert [s["startDateTime"] for s in slots[:4]] == [
        "2026-10-25T02:00:00.000",
        "2026-10-25T02:30:00.000",
    ] * 2
    for meeting in (first, second):
        chosen, _ = find_slot(
            slots,
            meeting,
            meeting + LENGTH,
            resource_id=None,
            appointment_type_id="apt-1",
            zone="Europe/Berlin",
            earliest=meeting,
        )
        assert chosen is not None and datetime.fromisoformat(chosen[TRUTH]) == meeting
    assert readings(datetime(2026, 3, 29, 2, 30), zone) == ()  # the gap
