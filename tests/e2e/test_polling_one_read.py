"""One read per connection, whoever holds it, and the documented limit across the deployment.

Real processes: two `bookingsync worker` (two poll threads each) and a `bookingsync scheduler` on
PostgreSQL and Redis, against one connection of the Leezy simulator (its own process). The
scheduler ticks the connection every second; a read takes about three, so most ticks land on
a thread while another thread, here or in the other worker, is reading.

Everything is judged from the simulator's request log. Forty meetings are stamped an hour ahead,
so every read pages through all of them (the watermark never passes them) in five keyed
requests: a start (a `since` older than any of them, or none) and then `since` anchored on keys
that only grow. The log must be nothing but such reads back to back: a second read starting
while one runs would put a start, or a smaller anchor, in the middle of another read. And the
requests must keep Leezy's documented Starter pace of 100 a minute (what the adapter paces at
without a plan) across both processes: no two closer than the pace allows, none refused.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from bookingsync.worker.db import make_engine
from tests.e2e.polling_support import (
    assert_no_traceback,
    leezy_block,
    production_config,
    requests_of,
    seed_leezy,
    start,
    stop_all,
    worker_polls,
)
from tests.e2e.support import wait_until
from tests.e2e.test_distributed import backing_services  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]

DOCUMENTED_PER_MINUTE = 100  # Leezy's Starter plan, the adapter's pace with no plan configured
MEETINGS, PAGE = 40, 10
POLLING_SECONDS = 10


def since_of(entry: dict) -> datetime | None:
    value = dict(entry["query"]).get("since")
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def test_two_workers_of_two_poll_threads_read_one_connection_one_read_at_a_time(
    tmp_path: Path,
    backing_services: tuple[str, str],  # noqa: F811
    sandbox_proc: dict[str, str],
) -> None:
    db_url, broker_url = backing_services
    leezy = sandbox_proc["leezy"]
    first_key = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    begins = first_key + timedelta(hours=2)
    seed_leezy(leezy, first_key, begins, MEETINGS, DOCUMENTED_PER_MINUTE)
    args = production_config(
        tmp_path / "bookingsync.toml",
        db_url,
        broker_url,
        leezy_block(leezy, threads=2, poll_threads=2, interval=1, rest=f"page_size = {PAGE}\n"),
    )
    procs = start(tmp_path, args, {"worker-a": "worker", "worker-b": "worker", "scheduler": "scheduler"})
    engine = make_engine(db_url)
    try:
        # Both workers up before the window opens: one still starting would take no tick in it.
        for proc in procs[:2]:
            wait_until(lambda proc=proc: "consuming" in proc.output(), 60, f"{proc.name}\n{proc.output()}")
        wait_until(
            lambda: httpx.get(f"{leezy}/_sandbox/requests").json()["requests"],
            60,
            f"a first read\n{procs[0].output()[-2000:]}",
        )
        time.sleep(POLLING_SECONDS)
        polls = [worker_polls(proc, "leezy") for proc in procs[:2]]
    finally:
        stop_all(procs)
    reads = requests_of(leezy, "/api/v1/meetings")
    with engine.connect() as conn:
        skipped = conn.execute(
            text("SELECT skipped_ticks FROM poll_states WHERE connection = 'leezy'")
        ).scalar()
    engine.dispose()
    assert_no_traceback(procs)

    assert all(e["status"] == 200 for e in reads), [e["status"] for e in reads]
    # Both workers took ticks, and ticks did find a read running (else nothing was excluded).
    # Which worker reads is the broker's choice: a worker may only have found the other's read.
    assert all(p.get("ok", 0) + p.get("busy", 0) >= 1 for p in polls), polls
    assert skipped and skipped >= 3 and sum(p.get("busy", 0) for p in polls) >= 3, (skipped, polls)
    # The log is whole reads back to back. A read's last (partial) page may end the log.
    anchors = [since_of(e) for e in reads]
    starts = [i for i, s in enumerate(anchors) if s is None or s < first_key]
    assert starts and starts[0] == 0, anchors[:3]
    bounds = [*starts, len(anchors)]
    whole = 0
    for begin, end in zip(bounds, bounds[1:], strict=False):
        keys = anchors[begin + 1 : end]
        assert all(a < b for a, b in zip(keys, keys[1:], strict=False)), (begin, anchors[begin:end])
        if end < len(anchors) or len(keys) == MEETINGS // PAGE:
            assert len(keys) == MEETINGS // PAGE, (begin, anchors[begin:end])  # a read cut by another
            whole += 1
    assert whole >= 3, len(starts)
    # The documented pace across both processes: 0.61 s per request (100/min x 1.02 margin).
    times = sorted(datetime.fromisoformat(e["received_at"]) for e in reads)
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    # A request that leaves late (a busy core) narrows the gap after it, hence 0.5 and not 0.61; two
    # pacers of their own would let a read start at once after the other process's last request.
    assert min(gaps) >= 0.5, sorted(gaps)[:5]
    for i, first in enumerate(times):
        in_minute = [t for t in times[i:] if (t - first).total_seconds() < 60]
        assert len(in_minute) <= DOCUMENTED_PER_MINUTE
