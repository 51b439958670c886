"""Memory stays flat under churn: what a process keeps per processed change is bounded.

The deterministic workload of tests/store/churn.py (ingest of Leezy pages, timers falling due,
relay, publish, delivery over loopback HTTP through the subscription's lane, retention) runs
with tracemalloc on. After a warm-up (caches filled, retention has run, the lane's threads and
connections exist), the Python memory still allocated is measured before and after a fixed
number of further changes. A leak of anything per change (a dict per message, a list entry per
event, an exception kept with its frames) shows as bytes retained per change; the bound is far
below what one event's row or payload costs (1-3 KB), far above the noise of bounded caches.

Deterministic: a manual clock, a seeded sequence of changes, and the figure is memory, never time.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bookingsync.worker.clock import ManualClock
from bookingsync.worker.db import make_engine, upgrade
from tests.store.churn import Churn, Subscriber

# Traced from the start: tracemalloc does not see a block freed that was allocated before it
# started, so state that turns over (caches, the workload's own live set) would read as growth.
WARMUP_STEPS = 20  # SQLAlchemy's statement cache, the pools, the lane's threads, retention's first runs
MEASURED_STEPS = 20
PER_STEP = 10
# Bytes of Python memory still held per processed change after the measured run.
BOUND_PER_CHANGE = 300


@pytest.fixture
def churn(tmp_path: Path) -> Iterator[Churn]:
    engine = make_engine(f"sqlite:///{tmp_path / 'churn.db'}")
    upgrade(engine)
    subscriber = Subscriber()
    tracemalloc.start(1)
    workload = Churn(
        engine,
        ManualClock(datetime(2026, 3, 2, 9, tzinfo=UTC)),
        subscriber.url,
        live=100,
        per_step=PER_STEP,
        retention_minutes=20,
        prune_every=10,
    )
    try:
        yield workload
    finally:
        tracemalloc.stop()
    workload.close()
    subscriber.close()
    engine.dispose()


def retained(churn: Churn) -> int:
    churn.settle()
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def test_memory_retained_per_processed_change_is_bounded(churn: Churn) -> None:
    for _ in range(WARMUP_STEPS):
        churn.step()
    before, changes, published = retained(churn), churn.changes, churn.published
    for _ in range(MEASURED_STEPS):
        churn.step()
    after = retained(churn)
    changes, published = churn.changes - changes, churn.published - published
    per_change = (after - before) / changes
    print(
        f"retained {after - before} B over {changes} changes, {published} events: {per_change:.0f} B/change"
    )
    # The workload really ran: changes ingested, timers and events published and delivered.
    assert changes == MEASURED_STEPS * PER_STEP and published > changes / 2
    assert per_change < BOUND_PER_CHANGE, (
        f"{after - before} bytes retained over {changes} changes ({per_change:.0f} B/change, "
        f"bound {BOUND_PER_CHANGE}): something keeps memory per change"
    )
