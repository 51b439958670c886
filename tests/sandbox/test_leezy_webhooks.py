"""Leezy webhook subscriptions and signed deliveries, checked by an independent HMAC."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta

from bookingsync.sandbox.leezy import DEFAULT_TOKEN, LeezyState
from bookingsync.sandbox.leezy.webhooks import build_signed_delivery

from .conftest import START, Receiver, Served

AUTH = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
MEETING_EVENTS = ["meeting.scheduled", "meeting.cancelled", "meeting.completed"]


def expected_signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def subscribe(sandbox: Served, url: str, **extra: object) -> dict[str, object]:
    response = sandbox.client.post(
        "/api/v1/webhooks/subscribe",
        headers=AUTH,
        json={"target_url": url, "event_types": MEETING_EVENTS, **extra},
    )
    assert response.status_code == 201, response.text
    return response.json()["data"]


def test_subscription_lifecycle(leezy_sandbox: Served) -> None:
    data = subscribe(leezy_sandbox, "https://example.com/hook", filters={"chatbot_id": "c1"})
    assert str(data["secret"]).startswith("lzy_ws_") and data["status"] == "active"
    assert str(data["id"]).startswith("webhook_")
    listed = leezy_sandbox.client.get("/api/v1/webhooks", headers=AUTH).json()
    assert listed["meta"]["total"] == 1
    assert "secret" not in listed["data"][0] and listed["data"][0]["failure_count"] == 0
    path = f"/api/v1/webhooks/{data['id']}"
    assert leezy_sandbox.client.delete(path, headers=AUTH).status_code == 204
    assert leezy_sandbox.client.get(path, headers=AUTH).status_code == 404


def test_subscribe_needs_webhooks_scope_and_known_events(leezy_sandbox: Served) -> None:
    leezy_sandbox.state.add_token("lzy_at_read", ["meetings:read"])  # type: ignore[attr-defined]
    refused = leezy_sandbox.client.post(
        "/api/v1/webhooks/subscribe",
        headers={"Authorization": "Bearer lzy_at_read"},
        json={"target_url": "https://example.com/h", "event_types": ["meeting.scheduled"]},
    )
    assert (refused.status_code, refused.json()["error"]) == (403, "insufficient_scope")
    bad = leezy_sandbox.client.post(
        "/api/v1/webhooks/subscribe",
        headers=AUTH,
        json={"target_url": "https://example.com/h", "event_types": ["meeting.rescheduled"]},
    )
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_request")


def test_lifecycle_deliveries_are_signed_over_timestamp_and_body(
    leezy_sandbox: Served, receiver: Receiver
) -> None:
    state: LeezyState = leezy_sandbox.state  # type: ignore[assignment]
    secret = str(subscribe(leezy_sandbox, receiver.url)["secret"])
    meeting_id = state.book(
        "Demo", START + timedelta(hours=1), START + timedelta(hours=2), "UTC", "a@example.com"
    )
    state.reschedule(meeting_id, START + timedelta(hours=3), START + timedelta(hours=4))
    state.cancel(meeting_id, reason="changed plans")
    other = state.book("Other", START, START + timedelta(minutes=5), "UTC", "b@example.com")
    state.complete(other)
    assert state.flush_deliveries(timeout=10)

    events = []
    for headers, body in receiver.received:
        assert headers["content-type"] == "application/json"
        assert headers["x-leezy-timestamp"] == str(int(START.timestamp()))
        assert headers["x-leezy-signature"] == expected_signature(secret, headers["x-leezy-timestamp"], body)
        assert headers["x-leezy-delivery"].startswith("del_")
        event = json.loads(body)
        assert set(event) == {"id", "type", "created_at", "organization_id", "chatbot_id", "data"}
        assert event["id"].startswith("evt_") and headers["x-leezy-event"] == event["type"]
        events.append(event)
    assert [e["type"] for e in events] == [
        "meeting.scheduled",
        "meeting.scheduled",
        "meeting.cancelled",
        "meeting.scheduled",
        "meeting.completed",
    ]
    rescheduled = events[1]["data"]
    assert rescheduled["id"] == meeting_id and rescheduled["type"] == "meeting"
    assert rescheduled["attributes"]["start_time"] == "2030-05-06T15:00:00Z"
    assert events[2]["data"]["attributes"]["cancelled_reason"] == "changed plans"
    attempts = state.deliveries()
    assert len(attempts) == 5 and all(a.succeeded for a in attempts)


def test_staging_variant_signs_the_body_alone(leezy_sandbox: Served, receiver: Receiver) -> None:
    state: LeezyState = leezy_sandbox.state  # type: ignore[assignment]
    leezy_sandbox.client.put(
        "/_sandbox/settings", json={"signature_variant": "staging", "next_webhook_secret": "s3cret"}
    )
    subscribe(leezy_sandbox, receiver.url)
    state.book("Demo", START, START + timedelta(hours=1), "UTC", "a@example.com")
    assert state.flush_deliveries(timeout=10)
    [(headers, body)] = receiver.received
    digest = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["x-leezy-signature"] == f"sha256={digest}"


def test_chatbot_filter_and_failed_deliveries(leezy_sandbox: Served, receiver: Receiver) -> None:
    state: LeezyState = leezy_sandbox.state  # type: ignore[assignment]
    receiver.status = 500
    sub = subscribe(leezy_sandbox, receiver.url, filters={"chatbot_id": "chatbot_a"})
    state.book(
        "Filtered out", START, START + timedelta(hours=1), "UTC", "b@example.com", chatbot_id="chatbot_b"
    )
    state.book("Delivered", START, START + timedelta(hours=1), "UTC", "a@example.com", chatbot_id="chatbot_a")
    assert state.flush_deliveries(timeout=10)
    assert len(receiver.received) == 1
    [attempt] = leezy_sandbox.client.get("/_sandbox/deliveries?wait=true").json()["deliveries"]
    assert (attempt["status_code"], attempt["succeeded"]) == (500, False)
    assert json.loads(attempt["body"])["chatbot_id"] == "chatbot_a"
    listed = leezy_sandbox.client.get(f"/api/v1/webhooks/{sub['id']}", headers=AUTH).json()
    assert listed["data"]["failure_count"] == 1


def test_build_signed_delivery_is_verifiable_independently() -> None:
    event = {
        "id": "evt_1",
        "type": "meeting.cancelled",
        "created_at": "2030-01-01T00:00:00Z",
        "organization_id": "org",
        "chatbot_id": "bot",
        "data": {"id": "meeting_1"},
    }
    delivery = build_signed_delivery("topsecret", event, timestamp=1705316400, delivery_id="del_1")
    assert json.loads(delivery.body) == event
    assert delivery.headers["X-Leezy-Signature"] == expected_signature(
        "topsecret", "1705316400", delivery.body
    )
    assert delivery.headers["X-Leezy-Event"] == "meeting.cancelled"
    assert delivery.headers["X-Leezy-Delivery"] == "del_1"
    staging = build_signed_delivery("topsecret", event, timestamp=1705316400, variant="staging")
    assert staging.headers["X-Leezy-Signature"] != delivery.headers["X-Leezy-Signature"]
