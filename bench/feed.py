"""Feed: what numbering events in commit order (worker/feed.py) costs publishing.

N `meeting.booked` events are claimed by the relay and published by T threads through
`worker.publish.publish`, the actor's code path, twice on fresh databases: once with
`feed.assign` replaced by a no-op (the floor: publishing as it was before the feed) and once as
shipped. The counter row serialises publishers from their `assign` to their commit, so the
ratio is the price of commit order. Figures are printed, never asserted.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from common import backends_of, database, parse_args

from bookingsync.models.meeting import Meeting, SourceRecord
from bookingsync.worker import feed, publish, store
from bookingsync.worker.clock import SystemClock
from bookingsync.worker.config import parse_config
from bookingsync.worker.db import transaction
from bookingsync.worker.relay import claim
from bookingsync.worker.runtime import Runtime

GRACE = timedelta(minutes=5)


def prepare(rt: Runtime, n: int) -> list[str]:
    now = rt.clock.now()
    with transaction(rt.engine) as session:
        for i in range(n):
            start = now + timedelta(days=1, minutes=i)
            record = SourceRecord(
                external_id=f"bench{i}",
                meeting=Meeting(
                    status="scheduled",
                    title="Bench",
                    start=start,
                    end=start + timedelta(minutes=30),
                    attendee={"email": f"p{i}@bench.example"},
                ),
            )
            store.apply_record(
                session,
                connection="leezy-bench",
                provider="leezy",
                record=record,
                raw={"id": record.external_id},
                now=now,
                grace=GRACE,
            )
    return claim(rt.engine, now, lease_seconds=3600, limit=n).events


def publish_all(rt: Runtime, events: list[str], threads: int) -> float:
    queue, lock = list(events), threading.Lock()

    def work() -> None:
        while True:
            with lock:
                if not queue:
                    return
                event_id = queue.pop()
            publish.publish(rt, event_id)

    started = time.perf_counter()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return len(events) / (time.perf_counter() - started)


def run(backend: str, n: int, threads: int, numbered: bool) -> float:
    original = feed.assign
    if not numbered:
        feed.assign = lambda session, events: None  # type: ignore[assignment]  # the floor
    try:
        with database(backend) as engine:
            rt = Runtime(config=parse_config({}, environ={}), engine=engine, clock=SystemClock())
            rate = publish_all(rt, prepare(rt, n), threads)
            rt.close()
            return rate
    finally:
        feed.assign = original  # type: ignore[assignment]


def main() -> None:
    args = parse_args(__doc__, 2000, threads=(4, "publishing threads"))
    print(
        f"feed: {args.n} events published by {args.threads} threads (events/s; floor = without feed.assign)"
    )
    print(f"{'backend':10s}{'floor':>10s}{'with feed':>12s}{'ratio':>8s}")
    for backend in backends_of(args):
        floor = run(backend, args.n, args.threads, numbered=False)
        shipped = run(backend, args.n, args.threads, numbered=True)
        print(f"{backend:10s}{floor:10.0f}{shipped:12.0f}{shipped / floor:8.2f}")


if __name__ == "__main__":
    main()
