"""Property test of identity through the real store and ingest (SQLite): the same real meetings
booked at several providers, read in any order, repeatedly and stale, end as one canonical
meeting each, with one `booked` each, every booking linked to its own meeting, and no meeting's
content stamp ever going backwards."""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bookingsync.models.tables import EventRow, LinkRow, MeetingRow
from tests.store.test_identity import START, World, record
from tests.store.test_safe_writes_properties import T0, fresh_engine

CONNECTIONS = ("lz", "ld", "hs")
REAL = [("ann@acme.com", START), ("bob@acme.com", START + timedelta(hours=2)), ("cy@acme.com", START)]


@settings(
    max_examples=int(os.environ.get("BOOKINGSYNC_PROPERTY_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    booked_at=st.lists(st.sets(st.sampled_from(CONNECTIONS), min_size=1), min_size=1, max_size=3),
    reads=st.lists(
        st.tuples(st.integers(0, 2), st.sampled_from(CONNECTIONS), st.integers(0, 2)), max_size=16
    ),
)
def test_reads_in_any_order_make_one_meeting_per_real_meeting(
    booked_at: list[set[str]], reads: list[tuple[int, str, int]]
) -> None:
    w = World(fresh_engine())

    def payload(n: int, conn: str, version: int) -> dict:
        email, start = REAL[n]
        return record(
            f"{conn}-{n}",
            start,
            email=email,
            title=f"{conn} v{version}",
            stamp=T0 + timedelta(minutes=10 * version + CONNECTIONS.index(conn)),
        )

    stamps: dict[str, object] = {}
    for n, conn, version in reads:
        if n >= len(booked_at) or conn not in booked_at[n]:
            continue
        w.read(conn, payload(n, conn, version))
        for m in w.rows(MeetingRow):
            if m.id in stamps and stamps[m.id] is not None and m.source_updated_at is not None:
                assert m.source_updated_at >= stamps[m.id], "a meeting's content went backwards"
            stamps[m.id] = m.source_updated_at or stamps.get(m.id)
    for n, conns in enumerate(booked_at):
        for conn in sorted(conns):
            w.read(conn, payload(n, conn, 2))

    meetings = w.rows(MeetingRow)
    assert len(meetings) == len(booked_at)
    by_meeting: dict[str, set[str]] = {}
    for link in w.rows(LinkRow):
        by_meeting.setdefault(link.meeting_id, set()).add(link.external_id)
    assert sorted(map(sorted, by_meeting.values())) == sorted(
        sorted(f"{c}-{n}" for c in conns) for n, conns in enumerate(booked_at)
    )
    booked = [e.meeting_id for e in w.rows(EventRow) if e.type == "meeting.booked"]
    assert sorted(booked) == sorted(m.id for m in meetings)
