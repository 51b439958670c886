"""The inbound webhook endpoint: every answer it can give, over real HTTP on loopback."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator

import pytest
from dramatiq.brokers.stub import StubBroker
import httpx
from sqlalchemy import Engine
from sqlmodel import select

from bookingsync.models.tables import ReceiptRow
from bookingsync.sandbox.server import serve_app
from bookingsync.worker.actors import declare
from bookingsync.worker.config import parse_config
from bookingsync.worker.db import transaction
from bookingsync.worker.runtime import Runtime
from bookingsync.worker.web import create_app
from tests.e2e.support import leezy_signed

LEEZY_SECRET = "lzy_ws_unit"
MEETERGO_TOKEN = "mg-url-token-123"
HUBSPOT_SECRET = "hs-client-secret"


@pytest.fixture
def setup(engine: Engine) -> Iterator[tuple[httpx.Client, Runtime, StubBroker]]:
    """The web app on a real server, on SQLite (receipts from the event loop while the write lock
    is free, worker/receipts_sqlite.py) and PostgreSQL (worker/receipts_async.py)."""
    cfg = parse_config(
        {
            "allow_private_targets": True,
            "server": {"max_body_bytes": 4096},
            "connections": [
                {
                    "id": "leezy",
                    "provider": "leezy",
                    "base_url": "http://127.0.0.1:9",
                    "token": "t1",
                    "webhook_secret": LEEZY_SECRET,
                },
                {"id": "ld", "provider": "leandata", "base_url": "http://127.0.0.1:9", "api_key": "k1"},
                {
                    "id": "mg",
                    "provider": "meetergo",
                    "base_url": "http://127.0.0.1:9",
                    "token": "rgo-abc",
                    "webhook_secret": MEETERGO_TOKEN,
                },
                {
                    "id": "hs",
                    "provider": "hubspot",
                    "base_url": "http://127.0.0.1:9",
                    "token": "pat-1",
                    "webhook_secret": HUBSPOT_SECRET,
                },
            ],
        },
        environ={},
    )
    broker = StubBroker()
    rt = Runtime(config=cfg, engine=engine, actors=declare(broker))
    served = serve_app(create_app(rt))
    with httpx.Client(base_url=served.url) as client:
        yield client, rt, broker
    served.stop()
    rt.close()


def meeting_envelope(event: str = "meeting.scheduled") -> dict:
    return {
        "id": "evt_1",
        "type": event,
        "created_at": "2026-03-01T10:00:00Z",
        "data": {
            "id": "meeting_1",
            "type": "meeting",
            "attributes": {
                "title": "Demo",
                "start_time": "2030-03-02T10:00:00Z",
                "end_time": "2030-03-02T10:30:00Z",
                "timezone": "UTC",
                "attendee": {"email": "a@acme.example"},
                "status": "scheduled",
                "updated_at": "2026-03-01T10:00:00Z",
            },
        },
    }


def receipts(rt: Runtime) -> list[ReceiptRow]:
    with transaction(rt.engine) as session:
        return list(session.exec(select(ReceiptRow)))


def test_signed_delivery_is_stored_once_and_queued(setup) -> None:
    client, rt, broker = setup
    headers, body = leezy_signed(
        LEEZY_SECRET, meeting_envelope(), delivery_id="del_1", event="meeting.scheduled"
    )
    first = client.post("/webhooks/leezy", content=body, headers=headers)
    assert first.status_code == 202 and first.json() == {"status": "accepted", "delivery_id": "del_1"}
    again = client.post("/webhooks/leezy", content=body, headers=headers)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    [row] = receipts(rt)
    assert row.status == "leased" and row.records and row.records[0]["payload"]["id"] == "meeting_1"
    if rt.engine.dialect.name == "sqlite":  # a SQLite file: the loop writes while the lock is free
        assert rt.loop_receipts is not None and rt.loop_receipts.written_here == 2
    rt.close()  # the hand-over sends what the writer committed, then stops
    assert len(broker.queues["bookingsync"].queue) == 1  # one ingest message, not two


def test_an_event_type_we_do_not_handle_is_acknowledged_and_recorded(setup) -> None:
    client, rt, broker = setup
    envelope = {
        "id": "evt_2",
        "type": "lead.created",
        "created_at": "2026-03-01T10:00:00Z",
        "data": {"id": "l1"},
    }
    headers, body = leezy_signed(LEEZY_SECRET, envelope, delivery_id="del_2", event="lead.created")
    response = client.post("/webhooks/leezy", content=body, headers=headers)
    assert response.status_code == 202 and response.json()["status"] == "ignored"
    [row] = receipts(rt)
    assert row.status == "ignored" and row.event_type == "lead.created" and not row.handled


def test_a_body_over_the_limit_is_413_and_nothing_is_stored(setup) -> None:
    client, rt, _ = setup
    huge = meeting_envelope()
    huge["padding"] = "x" * 5000
    headers, body = leezy_signed(LEEZY_SECRET, huge, delivery_id="del_3", event="meeting.scheduled")
    response = client.post("/webhooks/leezy", content=body, headers=headers)
    assert response.status_code == 413 and "4096" in response.json()["error"]
    assert receipts(rt) == []


def test_unknown_connection_and_a_connection_without_webhooks_are_404(setup) -> None:
    client, _, _ = setup
    missing = client.post("/webhooks/nobody", content=b"{}")
    assert missing.status_code == 404 and "nobody" in missing.json()["error"]
    polled_only = client.post("/webhooks/ld", content=b"{}")
    assert polled_only.status_code == 404 and "does not receive webhooks" in polled_only.json()["error"]


def test_forged_and_malformed_are_401_and_400_and_store_nothing(setup) -> None:
    client, rt, _ = setup
    headers, body = leezy_signed(
        "not-the-secret", meeting_envelope(), delivery_id="d", event="meeting.scheduled"
    )
    assert client.post("/webhooks/leezy", content=body, headers=headers).status_code == 401
    headers, body = leezy_signed(LEEZY_SECRET, {"unexpected": 1}, delivery_id="d2", event="meeting.scheduled")
    bad = client.post("/webhooks/leezy", content=body, headers=headers)
    assert bad.status_code == 400 and bad.json()["error"]
    assert receipts(rt) == []


def test_meetergo_token_in_the_url(setup) -> None:
    client, _, _ = setup
    payload = {
        "webhookType": "booking_created",
        "id": "appt-1",
        "start": "2030-03-02T10:00:00Z",
        "end": "2030-03-02T10:30:00Z",
        "attendees": [{"email": "b@acme.example"}],
    }
    body = json.dumps(payload).encode()
    assert client.post(f"/webhooks/mg?token={MEETERGO_TOKEN}", content=body).status_code == 202
    assert client.post("/webhooks/mg?token=wrong", content=body).status_code == 401
    assert client.post("/webhooks/mg", content=body).status_code == 401


def test_hubspot_v3_notice_queues_a_poll(setup) -> None:
    client, rt, broker = setup
    body = json.dumps(
        [
            {
                "eventId": 1,
                "subscriptionId": 7,
                "portalId": 62515,
                "appId": 1,
                "occurredAt": 1,
                "subscriptionType": "object.creation",
                "attemptNumber": 0,
                "objectId": 123,
                "objectTypeId": "0-47",
                "changeSource": "CRM_UI",
            }
        ]
    ).encode()
    timestamp = str(int(time.time() * 1000))
    uri = f"{client.base_url}".rstrip("/") + "/webhooks/hs"
    signature = base64.b64encode(
        hmac.new(
            HUBSPOT_SECRET.encode(), b"POST" + uri.encode() + body + timestamp.encode(), hashlib.sha256
        ).digest()
    ).decode()
    headers = {
        "X-HubSpot-Signature-v3": signature,
        "X-HubSpot-Request-Timestamp": timestamp,
        "Content-Type": "application/json",
    }
    response = client.post("/webhooks/hs", content=body, headers=headers)
    assert response.status_code == 202 and response.json()["status"] == "notified"
    tampered = dict(headers, **{"X-HubSpot-Signature-v3": base64.b64encode(b"x" * 32).decode()})
    assert client.post("/webhooks/hs", content=body, headers=tampered).status_code == 401
    rt.close()  # the hand-over sends what the writer committed, then stops
    messages = [json.loads(m) for m in broker.queues["bookingsync-polls"].queue]
    assert [(m["actor_name"], m["args"]) for m in messages] == [("bookingsync.poll", ["hs"])]
