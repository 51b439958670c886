"""A batch of ids binds as one statement text whatever its length (worker/sql_lists.py).

psycopg prepares every statement text it has run five times and keeps up to 100 per connection,
and converts a statement of more than 50 parameters again in Python on every run. With IN lists
each batch length was a text of its own: the scheduler kept hundreds of them and its memory grew
for hours (issue 18). SQLite's driver keeps the last 128 texts of each connection compiled, a
long IN list a program of hundreds of KB. Here, on both databases, claims, publishes and
delivery loads of six different batch sizes run exactly the same texts; with IN lists every size
adds its own.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, event, select

from bookingsync.models.tables import EventRow
from bookingsync.worker import delivery, store
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.config import parse_config
from bookingsync.worker.db import transaction
from bookingsync.worker.publish import publish_batch
from bookingsync.worker.relay import claim
from bookingsync.worker.runtime import Runtime
from tests.store.test_store_and_relay import apply, record

SIZES = (1, 2, 3, 5, 8, 13)


def test_batches_of_every_size_run_the_same_statement_texts(engine: Engine, clock: ManualClock) -> None:
    cfg = parse_config(
        {
            "allow_private_targets": True,
            "subscriptions": [
                {
                    "id": "crm",
                    "url": "http://127.0.0.1:9/",
                    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                }
            ],
            "events": {"console": False},
        },
        environ={},
    )
    rt = Runtime(config=cfg, engine=engine, clock=clock)
    for n in range(sum(SIZES)):
        apply(engine, clock, record(clock, f"m{n}"))  # each a `booked` event due now
    with transaction(engine) as session:
        meeting_of = dict(session.execute(select(EventRow.event_id, EventRow.meeting_id)).all())
    running: set[str] = set()

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        running.add(statement)

    event.listen(engine, "before_cursor_execute", seen)
    texts: dict[int, frozenset[str]] = {}
    try:
        for size in SIZES:
            running.clear()
            claimed = claim(engine, clock.now(), lease_seconds=30, limit=size)
            assert len(claimed.events) == size
            published = publish_batch(rt, claimed.events)
            assert len(published) == size
            with transaction(engine) as session:
                meeting_ids = sorted({meeting_of[p.event_id] for p in published})
                assert sum(map(len, store.links_of(session, meeting_ids).values())) == size
            delivery_ids = [d for p in published for d in p.deliveries]  # leased to their sender
            with transaction(engine) as session:
                assert len(delivery.load(session, delivery_ids)) == size
            texts[size] = frozenset(running)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
        rt.close()
    assert all(texts[size] == texts[SIZES[0]] for size in SIZES), {
        size: sorted(texts[size] - texts[SIZES[0]])[:2] for size in SIZES
    }
