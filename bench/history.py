"""CPU per processed change with little and with much history stored: the cost must not grow with it.

For each size (--small 10,000, then --n 1,000,000 stored events) a fresh database gets that much
finished history in the shape the service leaves behind (bench/scrape.py's `add_history`: ended
meetings with links, their published events, as many succeeded deliveries and processed
webhook receipts), then the deterministic churn of tests/store/churn.py runs on top of it in
this process: --steps steps of --per-step changes each (ingest of a Leezy page, the relay with
timers falling due, publish, delivery over loopback HTTP through the subscription's lane), after
--warmup steps. Retention stays off during the measurement, so the history stays the size given.

Printed per size: CPU seconds (this process, every thread) per processed change and per
published event, wall time, and the ratio large ÷ small. A ratio near 1.0 means the work per
change does not grow with history; the floor is the small run, measured in the same process.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import Timer, analyze, backends_of, database, parse_args
from scrape import add_history

from bookingsync.worker.clock import ManualClock
from tests.store.churn import Churn, Subscriber


def measure(backend: str, n: int, args, subscriber: Subscriber) -> dict[str, float]:
    with database(backend) as engine:
        now = datetime.now(UTC).replace(microsecond=0)
        with Timer() as load:
            if n:
                add_history(engine, n, now - timedelta(days=1))
            analyze(engine)
        clock = ManualClock(now)
        churn = Churn(engine, clock, subscriber.url, live=args.live, per_step=args.per_step, prune_every=0)
        try:
            for _ in range(args.warmup):
                churn.step()
            churn.settle()
            changes, published = churn.changes, churn.published
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(args.steps):
                churn.step()
            churn.settle()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            changes, published = churn.changes - changes, churn.published - published
        finally:
            churn.close()
    result = {
        "cpu_per_change_ms": 1000 * cpu / changes,
        "cpu_per_event_ms": 1000 * cpu / max(published, 1),
        "wall": wall,
        "changes": changes,
        "published": published,
    }
    print(
        f"  {backend:8s} {n:>9,d} stored events (loaded in {load.seconds:5.1f} s): {changes} changes, "
        f"{published} events published in {wall:5.1f} s; CPU {result['cpu_per_change_ms']:.2f} ms/change, "
        f"{result['cpu_per_event_ms']:.2f} ms/event",
        flush=True,
    )
    return result


def main() -> None:
    args = parse_args(
        __doc__,
        n=1_000_000,
        backends="sqlite",
        small=(10_000, "the smaller history (the floor)"),
        steps=(100, "measured steps"),
        warmup=(20, "steps before measuring"),
        per_step=(10, "changes per step"),
        live=(200, "live meetings the churn works on"),
    )
    print(
        f"history: CPU per processed change with {args.small:,d} vs {args.n:,d} stored events "
        "(machine shared: figures are noisy, the ratio is the point)"
    )
    subscriber = Subscriber()
    try:
        for backend in backends_of(args):
            small = measure(backend, args.small, args, subscriber)
            large = measure(backend, args.n, args, subscriber)
            print(
                f"  {backend:8s} ratio {args.n:,d} / {args.small:,d}: CPU per change "
                f"{large['cpu_per_change_ms'] / small['cpu_per_change_ms']:.2f}, per event "
                f"{large['cpu_per_event_ms'] / small['cpu_per_event_ms']:.2f}",
                flush=True,
            )
    finally:
        subscriber.close()


if __name__ == "__main__":
    main()
