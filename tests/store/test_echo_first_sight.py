"""Concurrent first sight of our own echo is an upsert (issue 13), on SQLite and PostgreSQL.

A mirror's create lost its answer after the target stored the booking, so no link exists; the
target then reports the booking (carrying our reference) by a webhook and a poll at the same
moment. Both readers recognise it as the echo of our write and both link it: one link, one
meeting, no error, and the poll's page commits whole. On PostgreSQL the two transactions overlap
(the second insert waits for the first, then takes its row); SQLite serialises writers, so there
the second reader finds the link and the rendezvous times out.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import Engine

from bookingsync.models.errors import RateLimited
from bookingsync.models.tables import EventRow, IntentRow, LinkRow, MeetingRow
from bookingsync.worker import identity, store
from tests.store.test_identity import World, record


def test_a_webhook_and_a_poll_of_our_own_echo_at_once_make_one_link(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = World(engine, routes=[{"sources": ["lz"], "targets": ["tgt"]}])
    w.target.outcomes = ["lost_after_store"]  # the booking is made, its answer never arrives

    def busy(request: Any) -> None:
        raise RateLimited("leandata", "slow down", retry_after=60)

    monkeypatch.setattr(w.target, "find_booking", busy)  # nor looked up yet: only its echo can link it
    w.read("lz", record("L1"))
    w.run()
    assert len(w.target.bookings) == 1
    assert [k for k in w.rows(LinkRow) if k.connection == "tgt"] == []  # our write is not linked
    echo = w.target.echoes[0]

    overlapping = engine.dialect.name == "postgresql"
    rendezvous = threading.Barrier(2, timeout=10 if overlapping else 0.5)
    matched = identity.match_unlinked
    inserted = store._insert_once
    winners: list[int] = []

    def match_then_meet(*args: Any, **kwargs: Any) -> Any:
        found = matched(*args, **kwargs)
        try:
            rendezvous.wait()
        except threading.BrokenBarrierError:
            pass
        return found

    monkeypatch.setattr(identity, "match_unlinked", match_then_meet)
    monkeypatch.setattr(store, "_insert_once", lambda *a, **k: winners.append(1) or inserted(*a, **k))
    errors: list[BaseException] = []

    def run(payloads: list[dict[str, Any]]) -> None:
        try:
            w.read("tgt", *payloads, adapter=w.target)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    other = dict(echo, id="b-other", reference=None, email="someone@else.com")
    threads = [threading.Thread(target=run, args=(p,)) for p in ([echo], [echo, other])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert len(winners) == (2 if overlapping else 1)  # PostgreSQL: both inserted; the race was real
    links = sorted((k.connection, k.external_id, k.mirrored) for k in w.rows(LinkRow))
    assert links == [("lz", "L1", False), ("tgt", "b-other", False), ("tgt", "b1", True)]
    meetings = w.rows(MeetingRow)
    assert len(meetings) == 2  # L1's, mirrored as b1; b-other's own (the poll's page committed)
    [ours] = [i for i in w.rows(IntentRow) if i.connection == "tgt"]
    assert ours.external_id == "b1"
    booked = [e.meeting_id for e in w.rows(EventRow) if e.type == "meeting.booked"]
    assert len(booked) == 2 and len(set(booked)) == 2
