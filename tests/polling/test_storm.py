"""A 429 storm against the Leezy simulator, through the poll actor's path (no in-thread retries).

With Retry-After the connection is held for that long, persisted (a new process honours it);
without, consecutive failures lengthen the wait across ticks. Either way a tick inside the wait
sends nothing, and `bookingsync status` says "backing off until …".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from dramatiq.brokers.stub import StubBroker
from sqlmodel import Session

from bookingsync.models.tables import PollStateRow
from bookingsync.sandbox.faults import Fault
from bookingsync.sandbox.server import start_sandbox
from bookingsync.worker import poll_state
from bookingsync.worker.actors import declare
from bookingsync.worker.clock import SystemClock
from bookingsync.worker.config import parse_config
from bookingsync.worker.poll import poll
from bookingsync.worker.reports import status
from bookingsync.worker.runtime import Runtime

LEEZY = "leezy-main"


@pytest.fixture
def setup(engine):
    sandbox = start_sandbox()
    config = parse_config(
        {
            "allow_private_targets": True,
            "connections": [
                {
                    "id": LEEZY,
                    "provider": "leezy",
                    "base_url": sandbox.leezy_url,
                    "token": sandbox.leezy_token,
                    "poll_interval_seconds": 10,
                }
            ],
        },
        environ={},
    )
    rt = Runtime(config=config, engine=engine, clock=SystemClock())
    rt.actors = declare(StubBroker())  # the actor's path: reschedule rather than sleep
    yield sandbox, rt, engine
    rt.close()
    sandbox.stop()


def requests(sandbox) -> int:
    return sum(1 for r in sandbox.leezy.requests.entries() if r.path == "/api/v1/meetings")


def state(engine) -> PollStateRow:
    with Session(engine) as session:
        return session.get(PollStateRow, LEEZY)


def test_retry_after_holds_the_connection_across_ticks_and_restarts(setup):
    sandbox, rt, engine = setup
    sandbox.leezy.add_fault(Fault(kind="429", retry_after=120, times=50))
    failed = poll(rt, LEEZY, defer=True)
    assert failed.error is not None and "429" in failed.error
    assert requests(sandbox) == 1  # no in-thread retries: the back-off belongs to the connection
    held = state(engine).not_before
    assert held is not None and held - datetime.now(UTC) > timedelta(seconds=110)
    # Ticks inside the wait send nothing, in this process or a new one (the wait is stored).
    other = Runtime(config=rt.config, engine=engine, clock=SystemClock())
    assert poll(rt, LEEZY, defer=True).skipped == "backing_off"
    assert poll(other, LEEZY, defer=True).skipped == "backing_off"
    other.close()
    assert requests(sandbox) == 1
    with Session(engine) as session:
        [row] = [
            r
            for r in status(session, rt.config, datetime.now(UTC))["connections"]
            if r["connection"] == LEEZY
        ]
    assert row["polling"].startswith("backing off until ") and "429" in row["polling"]


def test_without_retry_after_failures_in_a_row_lengthen_the_wait(setup):
    sandbox, rt, engine = setup
    sandbox.leezy.add_fault(Fault(kind="429", times=50))
    waits = []
    for _ in range(4):
        assert poll(rt, LEEZY, defer=True).error is not None
        row = state(engine)
        waits.append((row.not_before - datetime.now(UTC)).total_seconds())
        # What the next tick after the wait does: the connection may be read again.
        poll_state.update(engine, LEEZY, datetime.now(UTC), lambda r: setattr(r, "not_before", None))
    assert requests(sandbox) == 4  # one request per read, none retried in the thread
    assert state(engine).failures == 4
    # Drawn from [c/2, c] with c = 10, 20, 40, 80 s: each ceiling doubles.
    assert 4 < waits[0] <= 10 and 39 < waits[3] <= 80 and waits[3] > waits[0]
    sandbox.leezy.faults.clear()
    assert poll(rt, LEEZY, defer=True).error is None and state(engine).failures == 0
