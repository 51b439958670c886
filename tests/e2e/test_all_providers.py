"""All five providers at once, as real processes: the sandbox, `bookingsync run`, a subscriber.

Meetings booked, rescheduled and cancelled in Meetergo and HubSpot arrive by webhook and by poll
(the same change both ways) and become one canonical meeting each with each event once; a
meeting booked in Leezy is mirrored into RocketLead by a route, moved there when it moves, and
cancelled there when it is cancelled.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from bookingsync.sandbox import hubspot, meetergo, rocketlead
from tests.e2e.support import SUBSCRIBER_SECRET, Proc, Subscriber, free_port, wait_until
from tests.e2e.test_embedded import LEEZY_SECRET, iso

pytestmark = pytest.mark.e2e
MEETERGO_TOKEN = secrets.token_urlsafe(16)


@pytest.fixture
def service(tmp_path: Path, sandbox_proc: dict[str, str], subscriber: Subscriber) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = tmp_path / "bookingsync.toml"
    config.write_text(f"""
allow_private_targets = true  # the sandbox and the subscriber are on loopback
[database]
url = "sqlite:///{tmp_path / "all.db"}"
[server]
port = {port}
[scheduler]
relay_interval_seconds = 0.2
lease_seconds = 5
[events]
console = false
[delivery]
min_backoff_seconds = 0.5

[[connections]]
id = "leezy"
provider = "leezy"
base_url = "{sandbox_proc["leezy"]}"
token = "lzy_at_sandbox"
webhook_secret = "{LEEZY_SECRET}"
poll_interval_seconds = 1

[[connections]]
id = "meetergo"
provider = "meetergo"
base_url = "{sandbox_proc["meetergo"]}"
token = "{meetergo.DEFAULT_TOKEN}"
webhook_secret = "{MEETERGO_TOKEN}"
poll_interval_seconds = 2

[[connections]]
id = "hubspot"
provider = "hubspot"
base_url = "{sandbox_proc["hubspot"]}"
token = "{hubspot.DEFAULT_TOKEN}"
webhook_secret = "{hubspot.DEFAULT_CLIENT_SECRET}"
poll_interval_seconds = 2

[[connections]]
id = "rocketlead"
provider = "rocketlead"
base_url = "{sandbox_proc["rocketlead"]}"
token = "{rocketlead.DEFAULT_TOKEN}"
[connections.options]
calendar_id = "{rocketlead.DEFAULT_CALENDAR_ID}"
appointment_type_id = "{rocketlead.DEFAULT_APPOINTMENT_TYPE_ID}"

[[routes]]
sources = ["leezy"]
targets = ["rocketlead"]

[[subscriptions]]
id = "crm"
url = "{subscriber.url}"
secret = "{SUBSCRIBER_SECRET}"
""")
    proc = Proc("run", ["run", "--config", str(config)], tmp_path).start()
    try:
        wait_until(
            lambda: httpx.get(f"{base}/readyz", timeout=1).is_success, 60, f"bookingsync run\n{proc.output()}"
        )
        # Each provider is told where to send webhooks, the way an operator would set it up.
        httpx.post(
            f"{sandbox_proc['leezy']}/_sandbox/webhooks",
            json={
                "target_url": f"{base}/webhooks/leezy",
                "secret": LEEZY_SECRET,
                "event_types": ["meeting.scheduled", "meeting.cancelled", "meeting.completed"],
            },
        ).raise_for_status()
        httpx.post(
            f"{sandbox_proc['meetergo']}/_sandbox/webhooks",
            json={"endpoint": f"{base}/webhooks/meetergo?token={MEETERGO_TOKEN}"},
        ).raise_for_status()
        httpx.put(
            f"{sandbox_proc['hubspot']}/_sandbox/webhooks",
            json={"target_url": f"{base}/webhooks/hubspot", "client_secret": hubspot.DEFAULT_CLIENT_SECRET},
        ).raise_for_status()
        httpx.post(
            f"{sandbox_proc['hubspot']}/_sandbox/subscriptions", json={"meetings": True}
        ).raise_for_status()
        yield base
    finally:
        proc.stop()
        output = proc.output()
        assert "Traceback" not in output, output


def arrived_both_ways(sandbox: str, poll_path: str) -> None:
    """The provider's webhooks reached us (accepted) and we also read the same data by polling."""
    deliveries = httpx.get(f"{sandbox}/_sandbox/deliveries", params={"wait": "true"}).json()["deliveries"]
    assert any(d["status_code"] == 202 for d in deliveries), deliveries
    wait_until(
        lambda: any(
            r["path"] == poll_path and r["status"] == 200
            for r in httpx.get(f"{sandbox}/_sandbox/requests").json()["requests"]
        ),
        10,
        "a poll",
    )


def canonical_ids(subscriber: Subscriber, external_id: str) -> set[str]:
    return {body["data"]["meeting"]["id"] for body in subscriber.events_for(external_id)}


def test_meetergo_by_webhook_and_poll(
    service: str, sandbox_proc: dict[str, str], subscriber: Subscriber
) -> None:
    control = f"{sandbox_proc['meetergo']}/_sandbox"
    start = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    created = httpx.post(
        f"{control}/appointments",
        json={
            "start": iso(start),
            "duration": 30,
            "attendee_email": "mia@acme.example",
            "attendee_name": "Mia Park",
        },
    )
    created.raise_for_status()
    first = created.json()["id"]
    wait_until(lambda: subscriber.types_for(first) == ["meeting.booked"], 30, "booked from meetergo")
    moved = httpx.post(
        f"{control}/appointments/{first}/reschedule", json={"start": iso(start + timedelta(hours=1))}
    )
    moved.raise_for_status()
    successor = moved.json()["id"]
    wait_until(lambda: "meeting.rescheduled" in subscriber.types_for(first), 30, "rescheduled in meetergo")
    httpx.post(
        f"{control}/appointments/{successor}/cancel", json={"reason": "no longer needed"}
    ).raise_for_status()
    wait_until(lambda: "meeting.deleted" in subscriber.types_for(successor), 30, "deleted in meetergo")
    arrived_both_ways(sandbox_proc["meetergo"], "/v4/appointment/paginated")
    time.sleep(3)  # another poll re-reads it all: nothing may change
    assert subscriber.types_for(first) == ["meeting.booked", "meeting.rescheduled", "meeting.deleted"]
    assert (
        canonical_ids(subscriber, first) == canonical_ids(subscriber, successor)
        and len(canonical_ids(subscriber, first)) == 1
    )


def test_hubspot_by_webhook_and_poll(
    service: str, sandbox_proc: dict[str, str], subscriber: Subscriber
) -> None:
    control = f"{sandbox_proc['hubspot']}/_sandbox"
    start = (datetime.now(UTC) + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    created = httpx.post(
        f"{control}/meetings",
        json={
            "title": "Discovery",
            "start": iso(start),
            "end": iso(start + timedelta(minutes=45)),
            "attendee_email": "sam@acme.example",
        },
    )
    created.raise_for_status()
    meeting = created.json()["id"]
    wait_until(lambda: subscriber.types_for(meeting) == ["meeting.booked"], 30, "booked from hubspot")
    httpx.post(
        f"{control}/meetings/{meeting}/reschedule",
        json={"start": iso(start + timedelta(hours=2)), "end": iso(start + timedelta(hours=2, minutes=45))},
    ).raise_for_status()
    wait_until(lambda: "meeting.rescheduled" in subscriber.types_for(meeting), 30, "rescheduled in hubspot")
    httpx.post(f"{control}/meetings/{meeting}/cancel", json={}).raise_for_status()
    wait_until(lambda: "meeting.deleted" in subscriber.types_for(meeting), 30, "deleted in hubspot")
    arrived_both_ways(sandbox_proc["hubspot"], "/crm/objects/2026-03/meetings")
    time.sleep(3)  # another poll re-reads it all: nothing may change
    assert subscriber.types_for(meeting) == ["meeting.booked", "meeting.rescheduled", "meeting.deleted"]
    assert len(canonical_ids(subscriber, meeting)) == 1


def rocketlead_bookings(sandbox: str) -> list[dict]:
    return [item["booking"] for item in httpx.get(f"{sandbox}/_sandbox/bookings").json()["bookings"]]


def test_leezy_meeting_mirrored_into_rocketlead(
    service: str, sandbox_proc: dict[str, str], subscriber: Subscriber
) -> None:
    # RocketLead offers 30-minute slots on the half hour: book the Leezy meeting on that grid.
    start = (datetime.now(UTC) + timedelta(days=1)).replace(minute=30, second=0, microsecond=0)
    response = httpx.post(
        f"{sandbox_proc['leezy']}/_sandbox/meetings",
        json={
            "title": "Chatbot demo",
            "start": iso(start),
            "end": iso(start + timedelta(minutes=30)),
            "timezone": "Europe/Berlin",
            "attendee_email": "lee@acme.example",
            "attendee_name": "Lee",
        },
    )
    response.raise_for_status()
    meeting = response.json()["id"]
    wait_until(
        lambda: len(rocketlead_bookings(sandbox_proc["rocketlead"])) == 1, 30, "the RocketLead booking"
    )
    [booked] = rocketlead_bookings(sandbox_proc["rocketlead"])
    assert datetime.fromisoformat(booked["startDateTime"].replace("Z", "+00:00")) == start

    later = start + timedelta(hours=1)
    httpx.post(
        f"{sandbox_proc['leezy']}/_sandbox/meetings/{meeting}/reschedule",
        json={"start": iso(later), "end": iso(later + timedelta(minutes=30))},
    ).raise_for_status()

    def moved() -> bool:
        bookings = rocketlead_bookings(sandbox_proc["rocketlead"])
        return (
            len(bookings) == 1
            and datetime.fromisoformat(bookings[0]["startDateTime"].replace("Z", "+00:00")) == later
        )

    wait_until(moved, 30, "the RocketLead booking to move (book new, cancel old)")

    httpx.post(f"{sandbox_proc['leezy']}/_sandbox/meetings/{meeting}/cancel", json={}).raise_for_status()
    wait_until(
        lambda: rocketlead_bookings(sandbox_proc["rocketlead"]) == [], 30, "the RocketLead cancellation"
    )
    wait_until(lambda: "meeting.deleted" in subscriber.types_for(meeting), 20, "deleted at the subscriber")
    assert subscriber.types_for(meeting) == ["meeting.booked", "meeting.rescheduled", "meeting.deleted"]
    links = subscriber.events_for(meeting)[-1]["data"]["meeting"]["links"]
    assert {link["connection"] for link in links} == {"leezy", "rocketlead"}
