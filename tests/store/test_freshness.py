"""Fresh before firing (issue 13): a `hasStarted` waits, boundedly, for a re-read of a meeting not read lately.

Over real HTTP against the simulators, on SQLite and PostgreSQL. LeanData is re-read by id
(`GET /v1/meeting/:id`): a meeting cancelled there since our last read gets `deleted`, not
`hasStarted`. Leezy has no lookup by id: its poll is pulled forward, and the timer fires once
that poll has landed. With nothing landing, the timer fires when the wait runs out (counted),
never later and never dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from bookingsync.models.tables import EventRow
from bookingsync.sandbox.server import RunningSandbox, start_sandbox
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.config import parse_config
from bookingsync.worker.freshness import FRESHNESS, Freshness, Verdict, verdict
from bookingsync.worker.poll import poll
from bookingsync.worker.relay import claim
from bookingsync.worker.runtime import Runtime
from tests.adapters.test_poll_pipeline import PROSPECT, events_of, meeting_of, rows

LEEZY, LEANDATA = "leezy-main", "leandata-main"
T = datetime(2027, 1, 4, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("read_ago", "now_after", "expected"),
    [
        (4.0, 0.0, Verdict.FRESH),  # read 4 s before the start: fresh enough
        (6.0, 0.0, Verdict.WAIT),  # read 6 s before: wait for a re-read
        (6.0, 4.9, Verdict.WAIT),
        (6.0, 5.0, Verdict.STALE),  # the wait is over: fire on what we have
        (None, 1.0, Verdict.WAIT),  # never read (a link without a read time)
    ],
)
def test_verdict(read_ago: float | None, now_after: float, expected: Verdict) -> None:
    read_at = None if read_ago is None else T - timedelta(seconds=read_ago)
    assert verdict([read_at], T, T + timedelta(seconds=now_after), max_age=5, wait=5) is expected
    assert verdict([], T, T, max_age=5, wait=5) is Verdict.FRESH, "nothing we can read: nothing to wait for"


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    running = start_sandbox()
    yield running
    running.stop()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def rt(sandbox: RunningSandbox, engine: Engine, clock: ManualClock) -> Iterator[Runtime]:
    config = parse_config(
        {
            "allow_private_targets": True,
            "events": {"console": False},
            "connections": [
                {
                    "id": LEEZY,
                    "provider": "leezy",
                    "base_url": sandbox.leezy_url,
                    "token": sandbox.leezy_token,
                },
                {
                    "id": LEANDATA,
                    "provider": "leandata",
                    "base_url": sandbox.leandata_url,
                    "api_key": sandbox.leandata_api_key,
                    "watch_emails": [PROSPECT],
                },
            ],
        },
        environ={},
    )
    runtime = Runtime(config=config, engine=engine, clock=clock, adapter_overrides={"sleep": lambda _: None})
    yield runtime
    runtime.close()


def _claim(rt: Runtime, freshness: Freshness) -> list[str]:
    # A long lease: nothing publishes here, so what was claimed must not come back.
    claimed = claim(rt.engine, rt.clock.now(), lease_seconds=7200, limit=100, freshness=freshness)
    types = {e.event_id: e.type for e in rows(rt.engine, EventRow)}
    return [types[event_id] for event_id in claimed.events]


def _count(outcome: str) -> float:
    return FRESHNESS.labels(outcome)._value.get()


def test_leandata_meeting_cancelled_since_the_last_read_gets_deleted_not_started(
    rt: Runtime, sandbox: RunningSandbox, clock: ManualClock
) -> None:
    start = clock.now() + timedelta(minutes=30)
    external = sandbox.leandata.book("Intro", start, start + timedelta(minutes=30), PROSPECT)
    poll(rt, LEANDATA)
    assert "meeting.booked" in _claim(rt, Freshness(rt))
    sandbox.leandata.cancel(external)  # nobody reads LeanData between this and the start
    freshness = Freshness(rt)
    clock.set(start)
    asked = _count("reread_by_id")
    assert _claim(rt, freshness) == [], "held while the meeting is re-read by id"
    assert _count("reread_by_id") == asked + 1
    freshness.close_and_wait()
    clock.advance(0.5)
    assert _claim(rt, freshness) == ["meeting.deleted"]
    meeting_id = meeting_of(rt.engine, LEANDATA, external)
    started = [e for e in events_of(rt.engine, meeting_id) if e.type == "meeting.hasStarted"]
    assert len(started) == 1 and started[0].status in ("cancelled", "dropped"), started


def test_leezy_poll_is_pulled_forward_and_the_timer_fires_when_it_lands(
    rt: Runtime, sandbox: RunningSandbox, clock: ManualClock
) -> None:
    start = clock.now() + timedelta(minutes=30)
    sandbox.leezy.book("Demo", start, start + timedelta(minutes=30), "Europe/Berlin", "lead@example.com")
    poll(rt, LEEZY)
    _claim(rt, Freshness(rt))
    polls: list[str] = []
    freshness = Freshness(rt, send_poll=polls.append)
    clock.set(start - timedelta(seconds=2))
    freshness.prefetch(clock.now())
    assert polls == [LEEZY], "asked ahead of time"
    clock.set(start)
    assert _claim(rt, freshness) == []
    assert polls == [LEEZY], "asked once per wait, not once per tick"
    poll(rt, LEEZY)  # what the poll message does
    clock.advance(0.3)
    waited = _count("waited")
    assert _claim(rt, freshness) == ["meeting.hasStarted"]
    assert _count("waited") == waited + 1


def test_without_a_re_read_the_timer_fires_when_the_wait_runs_out(
    rt: Runtime, sandbox: RunningSandbox, clock: ManualClock
) -> None:
    start = clock.now() + timedelta(minutes=30)
    sandbox.leezy.book("Demo", start, start + timedelta(minutes=30), "Europe/Berlin", "lead@example.com")
    poll(rt, LEEZY)
    _claim(rt, Freshness(rt))
    freshness = Freshness(rt, send_poll=lambda _: None)  # the poll message is lost
    clock.set(start)
    assert _claim(rt, freshness) == []
    clock.set(start + timedelta(seconds=4.9))
    assert _claim(rt, freshness) == []
    stale = _count("stale")
    clock.set(start + timedelta(seconds=5))
    assert _claim(rt, freshness) == ["meeting.hasStarted"], "never later than the wait, never dropped"
    assert _count("stale") == stale + 1
