"""Cost of a /metrics scrape as finished history grows: the store collector against the old query.

The live set stays the same (LIVE pending timers, a few due deliveries and receipts); finished rows
(published events, succeeded deliveries, processed receipts) grow from none to N each. For each
size it prints the median time of one scrape by

  collector  worker/metrics.StoreCollector: counts live rows only, through the (status, due_at)
             indexes, plus the relay lag, cursors, disabled subscriptions and the leader lease
  old        what /metrics did before: SELECT status, count(*) … GROUP BY status over the whole
             events, deliveries and receipts tables

and each one's ratio to its own figure with no history (the floor, measured in the same run).
A flat ratio means the scrape does not grow with history.
"""

from __future__ import annotations

import itertools
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, func, insert, select, update

sys.path.insert(0, str(Path(__file__).parent))

from common import CHUNK, analyze, backends_of, database, insert_timers, parse_args, serial_hex, spread

from bookingsync.models.tables import DeliveryRow, EventRow, ReceiptRow
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.metrics import StoreCollector

LIVE = 500
REPEAT = 15
_batches = itertools.count()  # tags keep each batch's external ids (and meeting ids) apart


def old_scrape(engine: Engine) -> None:
    with engine.connect() as conn:
        for model in (EventRow, DeliveryRow, ReceiptRow):
            conn.execute(select(model.status, func.count()).group_by(model.status)).all()


def median_seconds(fn: object) -> float:
    times = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def add_history(engine: Engine, n: int, now: datetime) -> None:
    """n finished events (published), n succeeded deliveries, n processed receipts."""
    starts = spread(n // 2, now - timedelta(days=20), 86400 * 10)
    insert_timers(engine, starts, now, tag=f"h{next(_batches)}")
    with engine.begin() as conn:
        conn.execute(
            update(EventRow)
            .where(EventRow.due_at < now, EventRow.status == "pending")
            .values(status="published", published_at=now)
        )
    for base in range(0, n, CHUNK):
        size = min(CHUNK, n - base)
        when = now - timedelta(days=15)
        deliveries = [
            {
                "event_id": f"evt_{serial_hex()}",
                "subscription_id": "crm",
                "status": "succeeded",
                "due_at": when,
                "attempts": 1,
                "created_at": when,
                "finished_at": when,
            }
            for _ in range(size)
        ]
        receipts = [
            {
                "connection": "leezy-bench",
                "delivery_id": f"d{serial_hex()}",
                "event_type": "meeting.scheduled",
                "handled": True,
                "body": "{}",
                "records": [],
                "status": "done",
                "due_at": when,
                "received_at": when,
                "attempts": 1,
            }
            for _ in range(size)
        ]
        with engine.begin() as conn:
            conn.execute(insert(DeliveryRow.__table__), deliveries)
            conn.execute(insert(ReceiptRow.__table__), receipts)


def live_set(engine: Engine, now: datetime) -> None:
    insert_timers(engine, spread(LIVE // 2, now + timedelta(hours=1), 86400), now, tag="l")
    with engine.begin() as conn:
        conn.execute(
            insert(DeliveryRow.__table__),
            [
                {
                    "event_id": f"evt_{serial_hex()}",
                    "subscription_id": "crm",
                    "status": "pending",
                    "due_at": now,
                    "attempts": 0,
                    "created_at": now,
                }
                for _ in range(20)
            ],
        )
        conn.execute(
            insert(ReceiptRow.__table__),
            [
                {
                    "connection": "leezy-bench",
                    "delivery_id": f"live{serial_hex()}",
                    "event_type": "meeting.scheduled",
                    "handled": True,
                    "body": "{}",
                    "records": [],
                    "status": "received",
                    "due_at": now,
                    "received_at": now,
                    "attempts": 0,
                }
                for _ in range(20)
            ],
        )


def main() -> None:
    args = parse_args(__doc__, n=200_000, steps=(3, "history sizes measured, up to --n (geometric)"))
    now = datetime.now(UTC).replace(microsecond=0)
    sizes = [0] + [args.n // 10 ** (args.steps - 1 - i) for i in range(args.steps)]
    print(
        f"scrape cost vs finished history (live set: {LIVE} timers, 20 due deliveries, 20 due receipts; "
        f"median of {REPEAT}; shared machine: compare ratios, not absolute figures)"
    )
    for backend in backends_of(args):
        with database(backend) as engine:
            live_set(engine, now)
            collector = StoreCollector(engine, ManualClock(now))
            floor_new = floor_old = None
            have = 0
            for size in sizes:
                if size > have:
                    add_history(engine, size - have, now)
                    have = size
                    analyze(engine)
                new = median_seconds(lambda c=collector: list(c.collect()))
                old = median_seconds(lambda: old_scrape(engine))
                floor_new, floor_old = floor_new or new, floor_old or old
                print(
                    f"{backend:<8} history {size:>9,} rows/table   collector {new * 1000:8.2f} ms "
                    f"(x{new / floor_new:5.2f})   old GROUP BY {old * 1000:8.2f} ms (x{old / floor_old:6.2f})"
                )


if __name__ == "__main__":
    main()
