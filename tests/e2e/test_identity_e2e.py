"""Issue 16 in real processes: the sandbox, `bookingsync run` (the service of test_embedded, polling
Leezy and LeanData every second) and a subscriber. The same demo booked independently in Leezy
and in LeanData is one canonical meeting, booked once, and its next event lists both links."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.e2e.support import Subscriber, wait_until
from tests.e2e.test_embedded import PROSPECT, iso, service  # noqa: F401 (the service fixture)

pytestmark = pytest.mark.e2e


def test_the_same_demo_in_leezy_and_leandata_is_one_meeting(
    service: str,  # noqa: F811 (the imported fixture)
    sandbox_proc: dict[str, str],
    subscriber: Subscriber,
) -> None:
    # Whole minutes: both providers keep that precision, so the starts are the same instant.
    start = (datetime.now(UTC) + timedelta(hours=3)).replace(second=0, microsecond=0)
    end = start + timedelta(minutes=30)
    leezy = httpx.post(
        f"{sandbox_proc['leezy']}/_sandbox/meetings",
        json={
            "title": "Product demo",
            "start": iso(start),
            "end": iso(end),
            "timezone": "Europe/Berlin",
            "attendee_email": PROSPECT.upper(),
            "attendee_name": "Pat",
        },
    )
    leezy.raise_for_status()
    leezy_id = leezy.json()["id"]
    wait_until(lambda: "meeting.booked" in subscriber.types_for(leezy_id), 20, "booked from Leezy")
    leandata = httpx.post(
        f"{sandbox_proc['leandata']}/_sandbox/meetings",
        json={
            "title": "Routing demo",
            "start": iso(start),
            "end": iso(end),
            "prospect_email": PROSPECT,
            "organizer_email": "rep@seller.example",
        },
    )
    leandata.raise_for_status()
    leandata_id = leandata.json()["id"]
    # LeanData is read by its own poll; the record joins the meeting, nothing is announced for it.
    moved = start + timedelta(hours=1)

    # Once LeanData was read after the booking (polls that began after it), move the demo at Leezy.
    def polls() -> int:
        requests = httpx.get(f"{sandbox_proc['leandata']}/_sandbox/requests").json()["requests"]
        return len([r for r in requests if r["path"].startswith("/v1/meetings") and r["status"] == 200])

    before = polls()
    wait_until(lambda: polls() >= before + 3, 30, "three LeanData polls after the booking")
    httpx.post(
        f"{sandbox_proc['leezy']}/_sandbox/meetings/{leezy_id}/reschedule",
        json={"start": iso(moved), "end": iso(moved + timedelta(minutes=30))},
    ).raise_for_status()
    wait_until(lambda: "meeting.rescheduled" in subscriber.types_for(leezy_id), 20, "rescheduled")
    events = subscriber.events_for(leezy_id)
    assert [e["type"] for e in events] == ["meeting.booked", "meeting.rescheduled"]
    links = {(link["connection"], link["external_id"]) for link in events[-1]["data"]["meeting"]["links"]}
    assert links == {("leezy", leezy_id), ("leandata", leandata_id)}
    # One canonical meeting for both, and no event ever announced the LeanData booking on its own.
    assert {e["data"]["meeting"]["id"] for e in subscriber.events_for(leandata_id)} == {
        events[0]["data"]["meeting"]["id"]
    }
    assert subscriber.types_for(leandata_id) == ["meeting.rescheduled"]
    assert not subscriber.rejected
