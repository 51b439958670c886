"""`events.backfill` from the config through a real poll (Leezy simulator over HTTP → adapter →
ingest → store): a first read does not announce a meeting that is already over unless the
config says `all`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from bookingsync.models.tables import EventRow, LinkRow, MeetingRow
from bookingsync.sandbox.server import RunningSandbox, start_sandbox
from bookingsync.worker.clock import SystemClock
from bookingsync.worker.config import parse_config
from bookingsync.worker.poll import poll
from bookingsync.worker.runtime import Runtime


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    running = start_sandbox()
    yield running
    running.stop()


@pytest.mark.parametrize("backfill, announced", [(None, {"upcoming"}), ("all", {"upcoming", "over"})])
def test_a_first_read_announces_meetings_already_over_only_when_asked(
    sandbox: RunningSandbox, engine: Engine, backfill: str | None, announced: set[str]
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    ids = {
        "over": sandbox.leezy.book(
            "Last week",
            now - timedelta(days=7),
            now - timedelta(days=7, minutes=-30),
            "UTC",
            "old@example.com",
        ),
        "upcoming": sandbox.leezy.book(
            "Tomorrow", now + timedelta(days=1), now + timedelta(days=1, minutes=30), "UTC", "new@example.com"
        ),
    }
    config = {
        "connections": [
            {
                "id": "leezy-main",
                "provider": "leezy",
                "base_url": sandbox.leezy_url,
                "token": sandbox.leezy_token,
            }
        ],
        "allow_private_targets": True,
    }  # the simulator listens on loopback
    if backfill is not None:
        config["events"] = {"backfill": backfill}
    rt = Runtime(
        config=parse_config(config, environ={}),
        engine=engine,
        clock=SystemClock(),
        adapter_overrides={"sleep": lambda _seconds: None},
    )
    try:
        assert poll(rt, "leezy-main").error is None
    finally:
        rt.close()
    with Session(engine) as session:
        links = {link.external_id: link.meeting_id for link in session.exec(select(LinkRow))}
        booked_types = {(e.meeting_id, e.type) for e in session.exec(select(EventRow))}
        stored = {row.id for row in session.exec(select(MeetingRow))}
    assert {links[ids[name]] for name in ids} <= stored  # both are stored either way
    assert {
        name for name, external in ids.items() if (links[external], "meeting.booked") in booked_types
    } == announced
