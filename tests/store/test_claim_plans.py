"""The relay's claim stays an index look-up on SQLite when nearly every event is a pending timer.

SQLite's statistics only say how many rows share a status on average; with a store full of
pending timers and nothing else (issue 13's million), `status = 'leased'` looked as common as
`pending`, and the count of leased rows each relay tick became a scan of the whole table (0.8 s
a tick at a million, bench/timers.py --mode run). Every statement the claim and `lapse_leases`
run is checked here against SQLite's own query plan, after ANALYZE.
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert, text

from bookingsync.models.tables import EventRow
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.db import make_engine, upgrade
from bookingsync.worker.relay import claim, lapse_leases
from tests.conftest import T0
from tests.store.test_store_and_relay import apply, record

TIMERS = 3000


def test_claim_and_lapse_use_the_claim_index_among_thousands_of_pending_timers(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(engine)
    clock = ManualClock(T0)
    meeting = apply(engine, clock, record(clock, "m1", start_min=60)).meeting_id
    ahead = clock.now() + timedelta(days=1)
    rows = [
        {
            "event_id": f"evt_{i:032d}",
            "meeting_id": meeting,
            "type": "meeting.hasStarted",
            "dedupe_key": f"{meeting}:bench:{i}",
            "occurred_at": ahead + timedelta(seconds=i),
            "due_at": ahead + timedelta(seconds=i),
            "status": "pending",
            "created_at": clock.now(),
        }
        for i in range(TIMERS)
    ]
    with engine.begin() as conn:
        conn.execute(insert(EventRow), rows)
        conn.execute(text("ANALYZE"))
    statements: list[tuple[str, Any]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def note(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if "events" in statement and statement.lstrip().upper().startswith(("SELECT", "UPDATE")):
            statements.append((statement, params))

    claim(engine, clock.now(), lease_seconds=30, limit=100, max_in_flight=150)
    lapse_leases(engine, clock.now())
    assert len(statements) >= 3  # the leased count, lapsed leases, ready rows; the lapse
    plans = sqlite3.connect(tmp_path / "store.db")
    try:
        for statement, params in statements:
            plan = " / ".join(row[3] for row in plans.execute(f"EXPLAIN QUERY PLAN {statement}", params))
            assert "SCAN events" not in plan, f"{plan}\n{statement}"
    finally:
        plans.close()
        engine.dispose()
