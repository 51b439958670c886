"""Issue 16 in real processes: the sandbox, `bookingsync run` (polling Leezy and a second provider
every second) and a subscriber. The same demo booked independently in Leezy and in LeanData, or
in Leezy and in HubSpot, is one canonical meeting, booked once, and its next event lists both
links."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from bookingsync.sandbox import hubspot
from tests.e2e import identity_support
from tests.e2e.support import Subscriber, wait_until
from tests.e2e.test_embedded import PROSPECT, iso, service  # noqa: F401 (the service fixture)

pytestmark = pytest.mark.e2e


def test_the_same_demo_in_leezy_and_leandata_is_one_meeting(
    tmp_path: Path,
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

    # Once our store has the LeanData record joined to the meeting, move the demo at Leezy. (A poll
    # answered at LeanData is taken in a moment later: counting LeanData's answers is not enough.)
    def joined() -> bool:
        with sqlite3.connect(tmp_path / "e2e.db", timeout=10) as conn:
            return (
                conn.execute(
                    "SELECT count(*) FROM links a JOIN links b ON b.meeting_id = a.meeting_id "
                    "WHERE a.connection = 'leezy' AND a.external_id = ? "
                    "AND b.connection = 'leandata' AND b.external_id = ?",
                    (leezy_id, leandata_id),
                ).fetchone()[0]
                == 1
            )

    wait_until(joined, 30, "the LeanData record joined to the Leezy meeting")
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


HUBSPOT_READER = """
[[connections]]
id = "hubspot"
provider = "hubspot"
base_url = "{url}"
token = "{token}"
webhook_secret = "{secret}"
poll_interval_seconds = 1
requests_per_second = 50
[connections.options]
read_attendees = true
"""


def test_the_same_demo_in_leezy_and_hubspot_is_one_meeting(
    tmp_path: Path, sandbox_proc: dict[str, str], subscriber: Subscriber
) -> None:
    """Booked independently in Leezy and in HubSpot's UI (a CRM meeting with the prospect as its
    contact): one canonical meeting, both links (HubSpot's by attendee + start), one `booked`."""
    hub = sandbox_proc["hubspot"]
    hub_service = identity_support.start(
        tmp_path,
        sandbox_proc,
        subscriber,
        HUBSPOT_READER.format(url=hub, token=hubspot.DEFAULT_TOKEN, secret=hubspot.DEFAULT_CLIENT_SECRET),
    )
    try:
        start = (datetime.now(UTC) + timedelta(hours=5)).replace(second=0, microsecond=0)
        end = start + timedelta(minutes=30)
        leezy_id = hub_service.book(start, "Pat Prospect")  # attendee pat@acme.example
        wait_until(lambda: "meeting.booked" in subscriber.types_for(leezy_id), 20, "booked from Leezy")
        made = httpx.post(
            f"{hub}/_sandbox/meetings",
            json={
                "title": "Demo (logged in HubSpot)",
                "start": iso(start),
                "end": iso(end),
                "attendee_email": "PAT@acme.example",
                "attendee_firstname": "Pat",
            },
        )
        made.raise_for_status()
        hub_id = made.json()["id"]
        wait_until(
            lambda: ("hubspot", hub_id, "attendee-start") in identity_support.links(hub_service),
            30,
            "the HubSpot meeting joined to the Leezy one",
        )
        hub_service.move(leezy_id, start + timedelta(hours=1))
        wait_until(lambda: "meeting.rescheduled" in subscriber.types_for(leezy_id), 20, "rescheduled")
        time.sleep(1.5)  # two more HubSpot polls: nothing may change
    finally:
        identity_support.stop(hub_service)
    assert hub_service.meetings() == 1
    assert identity_support.links(hub_service) == {
        ("leezy", leezy_id, "origin"),
        ("hubspot", hub_id, "attendee-start"),
    }
    assert identity_support.event_types(hub_service) == ["meeting.booked", "meeting.rescheduled"]
    events = subscriber.events_for(leezy_id)
    assert [e["type"] for e in events] == ["meeting.booked", "meeting.rescheduled"]
    assert {(link["connection"], link["external_id"]) for link in events[-1]["data"]["meeting"]["links"]} == {
        ("leezy", leezy_id),
        ("hubspot", hub_id),
    }
    assert [b.body["type"] for b in subscriber.received].count("meeting.booked") == 1
    assert not subscriber.rejected
