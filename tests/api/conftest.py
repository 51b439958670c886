"""A bookingsync web app served over real HTTP on loopback, with a store that has something in it:
meetings with links and events, published events in the feed, deliveries (one dead), a quarantined
record. API keys: `READ_KEY` (read) and `WRITE_KEY` (write)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import select

from bookingsync.adapters.base import RawRecord
from bookingsync.models.meeting import Meeting, SourceRecord
from bookingsync.models.tables import DeliveryRow
from bookingsync.sandbox.server import ServedApp, serve_app
from bookingsync.worker import quarantine, store
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.config import parse_config
from bookingsync.worker.db import transaction
from bookingsync.worker.publish import publish
from bookingsync.worker.relay import claim
from bookingsync.worker.runtime import Runtime
from bookingsync.worker.web import create_app

READ_KEY = "read-key-0123456789abcdefghij"
WRITE_KEY = "write-key-0123456789abcdefghij"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
GRACE = timedelta(minutes=5)


def config(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "api_keys": [
            {"id": "reader", "key": READ_KEY, "scopes": ["read"]},
            {"id": "operator", "key": WRITE_KEY, "scopes": ["write"]},
        ],
        "connections": [
            {
                "id": "leezy-main",
                "provider": "leezy",
                "base_url": "http://127.0.0.1:9",
                "token": "lzy_at_test",
            },
            {
                "id": "rocketlead-main",
                "provider": "rocketlead",
                "base_url": "http://127.0.0.1:9",
                "token": "rocketlead_live_test",
                "options": {"calendar_id": "c1", "appointment_type_id": "a1"},
            },
        ],
        # Port 9 (discard) is closed on loopback: a delivery attempt fails without leaving the machine.
        "subscriptions": [{"id": "crm", "url": "http://127.0.0.1:9/hook", "secret": SECRET}],
        "allow_private_targets": True,  # every target here is on loopback
        **(extra or {}),
    }


@dataclass
class Served:
    rt: Runtime
    app: ServedApp
    clock: ManualClock

    @property
    def url(self) -> str:
        return self.app.url

    def client(self, key: str | None = WRITE_KEY) -> httpx.Client:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)


def record(
    external_id: str,
    start: datetime,
    status: str = "scheduled",
    title: str = "Demo",
    email: str = "lisa@acme.com",
) -> SourceRecord:
    return SourceRecord(
        external_id=external_id,
        meeting=Meeting(
            status=status,
            title=title,
            start=start,
            end=start + timedelta(minutes=30),
            attendee={"email": email},
        ),
    )


def apply(rt: Runtime, rec: SourceRecord, connection: str = "leezy-main") -> store.Applied:
    with transaction(rt.engine) as session:
        return store.apply_record(
            session,
            connection=connection,
            provider="leezy",
            record=rec,
            raw={"id": rec.external_id},
            now=rt.clock.now(),
            grace=GRACE,
        )


def publish_due(rt: Runtime) -> list[str]:
    claimed = claim(rt.engine, rt.clock.now(), lease_seconds=30, limit=1000)
    for event_id in claimed.events:
        publish(rt, event_id)
    return claimed.events


def populate(rt: Runtime) -> None:
    """Two meetings (one moved), their events published, one delivery dead, one record quarantined."""
    now = rt.clock.now()
    apply(rt, record("m1", now + timedelta(days=1)))
    apply(rt, record("m2", now + timedelta(days=2), email="max@acme.com"))
    publish_due(rt)
    apply(rt, record("m1", now + timedelta(days=1, hours=2)))
    publish_due(rt)
    with transaction(rt.engine) as session:
        first = session.exec(select(DeliveryRow).order_by(DeliveryRow.id)).first()
        assert first is not None
        first.status, first.finished_at, first.last_status_code, first.last_error = (
            "dead",
            now,
            400,
            "refused",
        )
        quarantine.add(
            session,
            connection="leezy-main",
            record=RawRecord(payload={"id": "bad"}, external_id="bad"),
            reason="start_time is missing",
            source="poll",
            now=now,
        )


@contextmanager
def serving(engine: Engine) -> Iterator[Served]:
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    rt = Runtime(config=parse_config(config(), environ={}), engine=engine, clock=clock)
    populate(rt)
    app = serve_app(create_app(rt))
    try:
        yield Served(rt, app, clock)
    finally:
        app.stop()
        rt.close()


@pytest.fixture
def served(engine: Engine) -> Iterator[Served]:
    with serving(engine) as running:
        yield running
