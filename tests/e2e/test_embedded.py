"""`bookingsync run` as a real process against the sandbox processes and a real subscriber."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.e2e.support import SUBSCRIBER_SECRET, Proc, Subscriber, free_port, leezy_signed, wait_until

pytestmark = pytest.mark.e2e
LEEZY_SECRET = "lzy_ws_e2e_secret_0123456789"
PROSPECT = "prospect@acme.example"


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


@pytest.fixture
def service(tmp_path: Path, sandbox_proc: dict[str, str], subscriber: Subscriber) -> Iterator[str]:
    port = free_port()
    config = tmp_path / "bookingsync.toml"
    config.write_text(f"""
allow_private_targets = true  # the sandbox and the subscriber are on loopback
[database]
url = "sqlite:///{tmp_path / "e2e.db"}"
[server]
port = {port}
[scheduler]
relay_interval_seconds = 0.2
lease_seconds = 5
[events]
grace_seconds = 60
[delivery]
min_backoff_seconds = 0.5

[[connections]]
id = "leezy"
provider = "leezy"
base_url = "{sandbox_proc["leezy"]}"
token = "lzy_at_sandbox"
webhook_secret = "env:E2E_LEEZY_SECRET"
poll_interval_seconds = 1

[[connections]]
id = "leandata"
provider = "leandata"
base_url = "{sandbox_proc["leandata"]}"
api_key = "ld_sandbox_api_key"
watch_emails = ["{PROSPECT}"]
poll_interval_seconds = 1

[[subscriptions]]
id = "crm"
url = "{subscriber.url}"
secret = "{SUBSCRIBER_SECRET}"
""")
    proc = Proc(
        "run", ["run", "--config", str(config)], tmp_path, env={"E2E_LEEZY_SECRET": LEEZY_SECRET}
    ).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{base}/readyz", timeout=1).is_success, 60, f"bookingsync run\n{proc.output()}"
        )
        yield base
    finally:
        proc.stop()
        assert "Traceback" not in proc.output(), proc.output()


def book_leezy(sandbox: str, start_in: float, minutes: float = 0.05, email: str = "lisa@acme.example") -> str:
    start = datetime.now(UTC) + timedelta(seconds=start_in)
    response = httpx.post(
        f"{sandbox}/_sandbox/meetings",
        json={
            "title": "Product demo",
            "start": iso(start),
            "end": iso(start + timedelta(minutes=minutes)),
            "timezone": "Europe/Berlin",
            "attendee_email": email,
            "attendee_name": "Lisa",
        },
    )
    response.raise_for_status()
    return response.json()["id"]


def test_booked_started_ended_in_order_each_once(
    service: str, sandbox_proc: dict[str, str], subscriber: Subscriber
) -> None:
    meeting = book_leezy(sandbox_proc["leezy"], start_in=4, minutes=0.05)
    wait_until(lambda: "meeting.hasEnded" in subscriber.types_for(meeting), 40, "hasEnded")
    assert subscriber.types_for(meeting) == ["meeting.booked", "meeting.hasStarted", "meeting.hasEnded"]
    events = subscriber.events_for(meeting)
    assert [e["data"]["sequence"] for e in events] == [1, 2, 3]
    started = events[1]["data"]
    assert started["occurred_at"] == started["meeting"]["start"]
    assert started["meeting"]["attendee"]["email"] == "lisa@acme.example"
    assert started["meeting"]["timezone"] == "Europe/Berlin"
    assert not subscriber.rejected


def test_cancelled_meeting_yields_deleted_and_no_started(
    service: str, sandbox_proc: dict[str, str], subscriber: Subscriber
) -> None:
    booked_at = datetime.now(UTC)
    meeting = book_leezy(sandbox_proc["leezy"], start_in=8)
    wait_until(lambda: "meeting.booked" in subscriber.types_for(meeting), 20, "booked")
    httpx.post(
        f"{sandbox_proc['leezy']}/_sandbox/meetings/{meeting}/cancel", json={"reason": "no longer needed"}
    ).raise_for_status()
    wait_until(lambda: "meeting.deleted" in subscriber.types_for(meeting), 20, "deleted")
    # Wait past the original start and end: the cancelled timers must stay silent.
    time.sleep(max(0.0, (booked_at + timedelta(seconds=12) - datetime.now(UTC)).total_seconds()))
    assert subscriber.types_for(meeting) == ["meeting.booked", "meeting.deleted"]


def test_leezy_webhook_replayed_twice_books_once_and_forgery_is_refused(
    service: str, subscriber: Subscriber
) -> None:
    start = datetime.now(UTC) + timedelta(hours=2)
    resource = {
        "id": "meeting_from_webhook",
        "type": "meeting",
        "attributes": {
            "title": "Booked by chatbot",
            "start_time": iso(start),
            "end_time": iso(start + timedelta(minutes=30)),
            "timezone": "UTC",
            "attendee": {"name": "Ada", "email": "ada@acme.example", "phone": None},
            "status": "scheduled",
            "meeting_url": "https://meet.example/abc",
            "cancelled_at": None,
            "created_at": iso(datetime.now(UTC)),
            "updated_at": iso(datetime.now(UTC)),
        },
    }
    envelope = {
        "id": "evt_1",
        "type": "meeting.scheduled",
        "created_at": iso(datetime.now(UTC)),
        "organization_id": "org_1",
        "chatbot_id": "chatbot_1",
        "data": resource,
    }
    headers, body = leezy_signed(LEEZY_SECRET, envelope, delivery_id="del_1", event="meeting.scheduled")
    first = httpx.post(f"{service}/webhooks/leezy", content=body, headers=headers)
    second = httpx.post(f"{service}/webhooks/leezy", content=body, headers=headers)
    assert first.status_code == 202 and second.status_code == 200 and second.json()["status"] == "duplicate"
    # The same content under a new delivery id is stored but changes nothing.
    headers3, body3 = leezy_signed(LEEZY_SECRET, envelope, delivery_id="del_2", event="meeting.scheduled")
    assert httpx.post(f"{service}/webhooks/leezy", content=body3, headers=headers3).status_code == 202
    wait_until(
        lambda: "meeting.booked" in subscriber.types_for("meeting_from_webhook"), 20, "booked via webhook"
    )
    forged, forged_body = leezy_signed(
        "wrong-secret", envelope, delivery_id="del_3", event="meeting.scheduled"
    )
    refused = httpx.post(f"{service}/webhooks/leezy", content=forged_body, headers=forged)
    assert refused.status_code == 401 and refused.json()["error"]
    stale, stale_body = leezy_signed(
        LEEZY_SECRET,
        envelope,
        delivery_id="del_4",
        event="meeting.scheduled",
        timestamp=int(datetime.now(UTC).timestamp()) - 600,
    )
    assert httpx.post(f"{service}/webhooks/leezy", content=stale_body, headers=stale).status_code == 401
    malformed, malformed_body = leezy_signed(
        LEEZY_SECRET, {"nope": True}, delivery_id="del_5", event="meeting.scheduled"
    )
    bad = httpx.post(f"{service}/webhooks/leezy", content=malformed_body, headers=malformed)
    assert bad.status_code == 400 and bad.json()["error"]
    assert httpx.post(f"{service}/webhooks/nobody", content=body, headers=headers).status_code == 404
    assert subscriber.types_for("meeting_from_webhook") == ["meeting.booked"]


def test_leandata_meeting_booked_then_removed_is_deleted(
    service: str, sandbox_proc: dict[str, str], subscriber: Subscriber
) -> None:
    start = datetime.now(UTC) + timedelta(hours=1)
    response = httpx.post(
        f"{sandbox_proc['leandata']}/_sandbox/meetings",
        json={
            "title": "Routing demo",
            "start": iso(start),
            "end": iso(start + timedelta(minutes=30)),
            "prospect_email": PROSPECT,
            "organizer_email": "rep@seller.example",
        },
    )
    response.raise_for_status()
    meeting = response.json()["id"]
    wait_until(lambda: "meeting.booked" in subscriber.types_for(meeting), 20, "LeanData booked")
    booked = subscriber.events_for(meeting)[0]["data"]["meeting"]
    assert booked["attendee"]["email"] == PROSPECT and booked["hosts"] == ["rep@seller.example"]
    httpx.delete(f"{sandbox_proc['leandata']}/_sandbox/meetings/{meeting}").raise_for_status()
    wait_until(lambda: "meeting.deleted" in subscriber.types_for(meeting), 20, "deleted after vanishing")
    assert subscriber.types_for(meeting) == ["meeting.booked", "meeting.deleted"]
