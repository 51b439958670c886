"""Polling at volume with real processes (PostgreSQL, Redis, a worker and a scheduler) and the
simulators in their own process; what was read is judged from the simulators' request logs, what
was sent from what the subscriber received.

* Many meetings behind one rate-limited Leezy connection: `booked` deliveries reach the
  subscriber while the read is still paging (the issue's 10,000 scaled to 1,000 at 30 requests a
  minute, so the read pages for about 20 s; bench/polling.py runs the full size).
* A slow LeanData with hundreds of watched emails beside Leezy: Leezy is still read every
  interval, and a Leezy meeting cancelled 15 s before its start is `deleted`, never `hasStarted`.

The 429 storm (with and without Retry-After) goes through real HTTP in tests/polling/test_storm.py.
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
    received_at,
    requests_of,
    seed_leezy,
    start,
    stop_all,
)
from tests.e2e.support import SUBSCRIBER_SECRET, Subscriber, wait_until
from tests.e2e.test_distributed import backing_services  # noqa: F401  (a fixture)
from tests.e2e.test_embedded import book_leezy

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]

LEEZY_LIST = "/api/v1/meetings"
LEANDATA_LIST = "/v1/meetings"


def subscription(subscriber: Subscriber) -> str:
    return f"""
[[subscriptions]]
id = "crm"
url = "{subscriber.url}"
secret = "{SUBSCRIBER_SECRET}"
"""


def booked_arrivals(subscriber: Subscriber) -> dict[str, float]:
    """Meeting id -> when its first `meeting.booked` arrived."""
    with subscriber.lock:
        items = list(subscriber.received)
    first: dict[str, float] = {}
    for item in items:
        if item.body["type"] == "meeting.booked":
            meeting = item.body["data"]["meeting"]["id"]
            first[meeting] = min(first.get(meeting, item.at), item.at)
    return first


MEETINGS, PAGE, PER_MINUTE = 400, 100, 30


def test_booked_deliveries_flow_while_a_rate_limited_read_is_still_paging(
    tmp_path: Path,
    backing_services: tuple[str, str],  # noqa: F811
    sandbox_proc: dict[str, str],
    subscriber: Subscriber,
) -> None:
    db_url, broker_url = backing_services
    leezy = sandbox_proc["leezy"]
    first_key = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    begins = first_key + timedelta(hours=4)
    seed_leezy(leezy, first_key, begins, MEETINGS, PER_MINUTE)
    args = production_config(
        tmp_path / "bookingsync.toml",
        db_url,
        broker_url,
        # One pipeline thread: a read that held it would hold every delivery.
        leezy_block(
            leezy,
            threads=1,
            poll_threads=1,
            interval=2,
            rest=f"page_size = {PAGE}\noptions = {{ requests_per_minute = {PER_MINUTE} }}\n",
        )
        + subscription(subscriber),
    )
    procs = start(tmp_path, args, {"worker": "worker", "scheduler": "scheduler"})
    try:
        wait_until(
            lambda: len(booked_arrivals(subscriber)) >= MEETINGS,
            90,
            f"every booked\n{procs[0].output()[-3000:]}",
            interval=0.5,
        )
    finally:
        stop_all(procs)
    assert_no_traceback(procs)
    engine = make_engine(db_url)
    with engine.connect() as conn:
        deferred = conn.execute(
            text("SELECT deferred_pages FROM poll_states WHERE connection = 'leezy'")
        ).scalar()
    engine.dispose()

    listing = requests_of(leezy, LEEZY_LIST)
    assert listing and all(e["status"] == 200 for e in listing), [e["status"] for e in listing]
    # The first read: every request before the first one anchored at the newest meeting's second
    # (which only the reads after it ask from).
    last_key = first_key + timedelta(seconds=MEETINGS - 1)
    paging = [
        e
        for e in listing
        if "since" not in dict(e["query"])
        or datetime.fromisoformat(dict(e["query"])["since"].replace("Z", "+00:00"))
        < last_key - timedelta(seconds=1)
    ]
    assert len(paging) >= MEETINGS // PAGE, len(paging)
    read_start, read_end = received_at(paging[0]), received_at(paging[-1])
    assert read_end - read_start >= (len(paging) - 1) * 60 / PER_MINUTE - 1  # it was paced

    arrivals = sorted(booked_arrivals(subscriber).values())
    assert len(arrivals) == MEETINGS
    before_end = sum(1 for at in arrivals if at < read_end)
    # Deliveries flowed while the read paged: the first within the first pages, and by the time
    # of the last page at least half of what the earlier pages had read.
    assert arrivals[0] < read_start + 4 * 60 / PER_MINUTE, arrivals[0] - read_start
    assert before_end >= (len(paging) - 1) * PAGE // 2, (before_end, len(paging))
    assert not subscriber.rejected
    # The pacing deferred the read (a message delayed to the next slot), it did not sleep a thread.
    assert deferred is not None and deferred >= len(paging) // 2, deferred


WATCHED, LEANDATA_RATE, INTERVAL = 300, 5.0, 2.0
BOOKED_WITHIN = 8


def test_a_slow_leandata_of_hundreds_of_emails_leaves_leezy_its_interval_and_its_cancel_in_time(
    tmp_path: Path,
    backing_services: tuple[str, str],  # noqa: F811
    sandbox_proc: dict[str, str],
    subscriber: Subscriber,
) -> None:
    db_url, broker_url = backing_services
    leezy, leandata = sandbox_proc["leezy"], sandbox_proc["leandata"]
    # Slow: every LeanData answer takes 0.3 s on top of our 5 requests a second.
    httpx.post(
        f"{leandata}/_sandbox/faults", json={"kind": "delay", "seconds": 0.3, "times": 100_000}
    ).raise_for_status()
    emails = ", ".join(f'"prospect{i:03d}@acme.example"' for i in range(WATCHED))
    args = production_config(
        tmp_path / "bookingsync.toml",
        db_url,
        broker_url,
        leezy_block(leezy, threads=2, poll_threads=2, interval=INTERVAL)
        + f"""
[[connections]]
id = "leandata"
provider = "leandata"
base_url = "{leandata}"
api_key = "ld_sandbox_api_key"
requests_per_second = {LEANDATA_RATE}
poll_interval_seconds = {INTERVAL}
watch_emails = [{emails}]
{subscription(subscriber)}""",
    )
    procs = start(tmp_path, args, {"worker": "worker", "scheduler": "scheduler"})
    try:
        wait_until(lambda: requests_of(leandata, LEANDATA_LIST), 60, f"LeanData read\n{procs[0].output()}")
        # `booked` must be in before the cancel, 15 s before the start: a Leezy read every 2 s,
        # then the relay and the delivery, on a loaded machine, get up to BOOKED_WITHIN seconds.
        meeting = book_leezy(leezy, start_in=BOOKED_WITHIN + 16, minutes=5, email="late@acme.example")
        begins = time.time() + BOOKED_WITHIN + 16
        wait_until(
            lambda: subscriber.arrival(meeting, "meeting.booked"), BOOKED_WITHIN, "booked before the cancel"
        )
        time.sleep(max(0.0, begins - 15 - time.time()))
        httpx.post(f"{leezy}/_sandbox/meetings/{meeting}/cancel", json={}).raise_for_status()
        cancelled_at = time.time()
        wait_until(lambda: time.time() > begins + 2, 30, "the start to pass", interval=0.5)
    finally:
        stop_all(procs)
    assert_no_traceback(procs)
    assert cancelled_at <= begins - 14.5  # the test kept its own schedule
    assert subscriber.types_for(meeting) == ["meeting.booked", "meeting.deleted"]

    # LeanData was busy the whole time, at its rate: hundreds of emails, no more than 5 a second.
    asked = [received_at(e) for e in requests_of(leandata, LEANDATA_LIST)]
    window = [t for t in asked if t >= asked[0] + 2]
    assert len(asked) >= 25 and len(window) / (asked[-1] - asked[0] - 2) <= LEANDATA_RATE * 1.05
    # Leezy kept its interval while LeanData read: no gap between its reads much over 2 s.
    reads = [
        received_at(e) for e in requests_of(leezy, LEEZY_LIST) if asked[0] <= received_at(e) <= asked[-1]
    ]
    gaps = [b - a for a, b in zip(reads, reads[1:], strict=False)]
    assert len(reads) >= 8 and max(gaps) <= INTERVAL * 1.75, sorted(gaps)[-5:]
