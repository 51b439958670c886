"""Issue 17 end to end, in real processes: `bookingsync sandbox`, `bookingsync run`, a subscriber.

* A RocketLead calendar in Europe/Berlin that writes its slots as local wall times, booked in
  both 02:00 hours of 2027-10-31 (clocks go back at 03:00 CEST): two bookings, one per hour.
* A meeting first seen ten minutes after its start: `hasStarted` at once, with `late_by`.
* Leezy's clock two minutes behind ours: the skew is measured (`/metrics`) and the saved cursor
  stays behind Leezy's own read start by the margin.
* A Meetergo meeting type with allowed durations fed a meeting it cannot hold: refused with the
  reason in `mirrors list`, nothing booked; a meeting it can hold is booked once and stays so.

Bookings are counted in the simulators' own state, events in the subscriber's.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from bookingsync.sandbox import meetergo, rocketlead
from tests.e2e.support import wait_for_more_requests, wait_until
from tests.e2e.test_safe_writes import (  # noqa: F401 - start_service is a fixture
    MEETERGO,
    ROCKETLEAD,
    appointments,
    next_weekday,
    rl_bookings,
    start_of,
    start_service,
)

pytestmark = pytest.mark.e2e
FIRST_TWO = datetime(2027, 10, 31, 0, 0, tzinfo=UTC)  # 02:00 CEST
SECOND_TWO = datetime(2027, 10, 31, 1, 0, tzinfo=UTC)  # 02:00 CET, an hour later


def skew_metric(base: str) -> float | None:
    found = re.search(
        r'bookingsync_provider_clock_skew_seconds\{connection="leezy"\} (\S+)',
        httpx.get(f"{base}/metrics", timeout=10).text,
    )
    return float(found.group(1)) if found else None


def test_berlin_fold_late_first_sight_and_a_leezy_clock_behind(start_service, sandbox_proc) -> None:  # noqa: F811
    rl, leezy = sandbox_proc["rocketlead"], sandbox_proc["leezy"]
    httpx.put(f"{rl}/_sandbox/settings", json={"wall_times": True}).raise_for_status()
    httpx.put(f"{leezy}/_sandbox/settings", json={"clock_offset_seconds": -120}).raise_for_status()
    service = start_service(
        "rocketlead",
        ROCKETLEAD.format(
            url=rl,
            token=rocketlead.DEFAULT_TOKEN,
            calendar=rocketlead.DEFAULT_CALENDAR_ID,
            atype=rocketlead.DEFAULT_APPOINTMENT_TYPE_ID,
        ),
    )
    first = service.book(FIRST_TWO, "Ann First")
    second = service.book(SECOND_TWO, "Bob Second")
    late = service.book(datetime.now(UTC) - timedelta(minutes=10), "Cy Late", minutes=40)

    # Both 02:00 hours booked, each exactly once, on the one resource: the same local time twice.
    wait_until(lambda: len(rl_bookings(service)) == 2, 60, "two RocketLead bookings")
    booked = rl_bookings(service)
    assert [b["startDateTime"] for b in booked] == ["2027-10-31T02:00:00.000"] * 2
    assert len({b["resourceSlotId"] for b in booked}) == 2
    mirror_sql = (
        "SELECT l.start, l2.external_id FROM links l JOIN links l2 ON l2.meeting_id = "
        "l.meeting_id AND l2.connection = 'leezy' WHERE l.connection = 'rocketlead'"
    )
    # The booking exists at RocketLead a moment before our answer to it is stored as a link.
    wait_until(lambda: len(service.query(mirror_sql)) == 2, 30, "both mirror links stored")
    mirrors = service.query(mirror_sql)
    by_source = {source: datetime.fromisoformat(str(start)).replace(tzinfo=UTC) for start, source in mirrors}
    assert by_source == {first: FIRST_TWO, second: SECOND_TWO}

    # First seen ten minutes after its start: hasStarted at once, marked.
    # Its `booked` and `hasStarted` are written at once and sent side by side (a subscription has
    # several senders): either may arrive first.
    wait_until(
        lambda: {"meeting.booked", "meeting.hasStarted"} <= set(service.subscriber.types_for(late)),
        30,
        "the late booked and hasStarted",
    )
    assert service.subscriber.types_for(late) == ["meeting.booked", "meeting.hasStarted"]
    started = service.subscriber.events_for(late)[1]["data"]
    assert 595 <= started["late_by"] <= 700
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", started["occurred_at"])

    # Leezy two minutes behind: measured from its Date headers, and the cursor keeps the margin.
    wait_until(lambda: (skew_metric(service.base) or 0) < -100, 30, "the measured skew")
    assert -125 <= (skew_metric(service.base) or 0) <= -115
    # Reads that began with the estimate in place, one of them answered and taken in.
    wait_for_more_requests(leezy, "/api/v1/meetings", 3, 30, "Leezy reads with the estimate in place")
    (cursor,) = service.query("SELECT value FROM cursors WHERE connection = 'leezy'")[0]
    since = datetime.fromisoformat(json.loads(cursor)["since"].replace("Z", "+00:00"))
    # Judged on Leezy's own clock, against the start of its newest read (the one that saved the
    # cursor or a later one), not against our clock some moment after that read: `Date` has whole
    # seconds and each sample is centred on its second, so the measured lag may fall short of the
    # true one by up to half a second, never more (adapters/skew.py).
    reads = [
        datetime.fromisoformat(entry["received_at"])
        for entry in httpx.get(f"{leezy}/_sandbox/requests", timeout=10).json()["requests"]
        if entry["path"] == "/api/v1/meetings"
    ]
    assert since <= max(reads) - timedelta(seconds=30 - 0.5), (since, max(reads))
    # Nothing was booked twice and nothing more happened to the fold meetings.
    wait_until(lambda: "meeting.booked" in service.subscriber.types_for(first), 30, "the first's booked")
    assert len(rl_bookings(service)) == 2
    assert service.subscriber.types_for(first) == ["meeting.booked"]


def test_meetergo_type_with_allowed_durations_refuses_what_it_cannot_hold(
    start_service,  # noqa: F811
    sandbox_proc,
) -> None:
    target = MEETERGO.format(
        url=sandbox_proc["meetergo"],
        token=meetergo.DEFAULT_TOKEN,
        secret="e2e-time-token",
        meeting_type=meetergo.MEETING_TYPE_ID,
        host=meetergo.DEFAULT_USER_ID,
    )
    service = start_service("meetergo", target + "durations = [30, 60]\n")
    day = next_weekday(10)
    held = service.book(day + timedelta(seconds=20, milliseconds=250), "Ann Held", minutes=30)
    service.book(day + timedelta(hours=2), "Bob Odd", minutes=45)
    wait_until(lambda: len(appointments(service)) == 1, 40, "the one appointment meetergo can hold")
    wait_until(
        lambda: service.query("SELECT count(*) FROM write_intents WHERE state = 'failed'")[0][0] == 1,
        40,
        "the refusal recorded",
    )
    # The appointment exists at meetergo a moment before our answer to it is stored as done.
    done_creates = (
        "SELECT count(*) FROM write_intents WHERE connection = 'meetergo' AND action = 'create' "
        "AND state = 'done'"
    )
    wait_until(lambda: service.query(done_creates)[0][0] >= 1, 30, "the create stored as done")
    wait_until(lambda: "meeting.booked" in service.subscriber.types_for(held), 30, "the held one's booked")
    # Polls re-read the appointment; converges after them plan nothing.
    poll = "/v4/appointment/paginated"
    wait_for_more_requests(sandbox_proc["meetergo"], poll, 3, 30, "meetergo polls after the writes")
    listed = json.loads(service.cli("mirrors", "list", "--json"))
    (refused,) = [row for row in listed if row["state"] == "failed"]
    assert refused["reason"].startswith("meetergo cannot hold this meeting: the meeting lasts 45 min")
    (only,) = appointments(service)
    assert start_of(only) == day  # floored to meetergo's minute, not moved
    assert len(appointments(service)) == 1 and not only.get("cancel")
    assert service.subscriber.types_for(held) == ["meeting.booked"]
    assert service.query(done_creates)[0][0] == 1
