"""Concurrent first sight of a peer is an upsert (issue 13), on SQLite and PostgreSQL (`engine`).

A meeting known through one provider is booked at a second one too; a webhook and a poll of the
second provider read that booking at the same moment. Both match it to the meeting by the
identity rules and both link it: one link, one meeting, no `booked` for the peer, no error, and
the poll's page (which carries another, new booking) commits whole.

On PostgreSQL the two transactions really overlap: both read "no link" and match before either
writes, and the second insert waits for the first to commit. SQLite serialises writers at
`BEGIN IMMEDIATE`, so there the second reader simply finds the link: the rendezvous below times
out and the test checks that the outcome is the same.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import col, select

from bookingsync.adapters.base import RawRecord
from bookingsync.models.tables import AuditRow, EventRow, LinkRow, MeetingRow
from bookingsync.worker import identity, ingest, store
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.db import transaction
from tests.store.test_identity import START, Reader, record
from tests.store.test_safe_writes_properties import GRACE, T0


def read(engine: Engine, connection: str, *payloads: dict[str, Any], now: Any) -> ingest.IngestResult:
    result = ingest.IngestResult()
    raws = [RawRecord(payload=p, external_id=p["external_id"]) for p in payloads]
    with transaction(engine) as session:
        ingest.ingest_records(
            session, Reader(), connection, raws, source="poll", now=now, grace=GRACE, result=result
        )
    return result


def rows(engine: Engine, model: Any) -> list[Any]:
    with transaction(engine) as session:
        return list(session.exec(select(model).order_by(col(model.id))))


def test_a_webhook_and_a_poll_linking_one_peer_booking_at_once_make_one_link(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock(T0)
    read(engine, "lz", record("L1", hosts=("rep@us.com",)), now=clock.now())
    [meeting] = rows(engine, MeetingRow)

    overlapping = engine.dialect.name == "postgresql"
    # Both readers have looked the booking up (no link) and matched it before either writes.
    rendezvous = threading.Barrier(2, timeout=10 if overlapping else 0.5)
    matched = identity.match_unlinked
    lost: list[str] = []  # readers whose insert found the other's link (the ON CONFLICT path)
    link_peer = store.link_peer

    def match_then_meet(*args: Any, **kwargs: Any) -> Any:
        found = matched(*args, **kwargs)
        try:
            rendezvous.wait()
        except threading.BrokenBarrierError:
            pass
        return found

    def counted_link_peer(*args: Any, **kwargs: Any) -> Any:
        link = link_peer(*args, **kwargs)
        if link is None:
            lost.append(threading.current_thread().name)
        return link

    monkeypatch.setattr(identity, "match_unlinked", match_then_meet)
    monkeypatch.setattr(store, "link_peer", counted_link_peer)
    peer = record("D1", title="LeanData's title", hosts=("rep@us.com", "boss@us.com"))
    other = record("D2", START + timedelta(hours=3))
    results: dict[str, ingest.IngestResult] = {}
    errors: list[BaseException] = []

    def run(name: str, payloads: list[dict[str, Any]]) -> None:
        try:
            results[name] = read(engine, "ld", *payloads, now=clock.now())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=("webhook", [peer]), name="webhook"),
        threading.Thread(target=run, args=("poll", [peer, other]), name="poll"),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    # PostgreSQL: the race was real, and exactly one reader lost it. SQLite: nobody could.
    assert len(lost) == (1 if overlapping else 0)
    assert results["webhook"].applied == 1 and results["poll"].applied == 2  # no page rolled back
    links = {(link.connection, link.external_id): link for link in rows(engine, LinkRow)}
    assert sorted(links) == [("ld", "D1"), ("ld", "D2"), ("lz", "L1")]
    assert links[("ld", "D1")].meeting_id == meeting.id and links[("ld", "D1")].rule == "attendee-start"
    assert len(rows(engine, MeetingRow)) == 2  # L1's meeting, joined by D1; D2's of its own
    booked = [e.meeting_id for e in rows(engine, EventRow) if e.type == "meeting.booked"]
    assert sorted(booked) == sorted([meeting.id, links[("ld", "D2")].meeting_id])
    linked = [a for a in rows(engine, AuditRow) if a.action == "linked" and a.external_id == "D1"]
    assert len(linked) == 1
