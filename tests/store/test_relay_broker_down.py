"""The broker down or restarting is an outage to wait out: the relay says so in one line a tick,
not a traceback, puts what it claimed back in line, and sends it once the broker answers.

Found by test_failover's production test (Redis restarted while the relay was sending): the
scheduler logged `relay tick failed` with a traceback from redis-py's `ConnectionError`."""

from __future__ import annotations

import logging
import socket

import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import Engine, select

from bookingsync.models.tables import EventRow
from bookingsync.worker import broker as brokers
from bookingsync.worker.actors import QUEUE, declare
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.config import parse_config
from bookingsync.worker.runtime import Runtime
from bookingsync.worker.scheduler import Scheduler
from tests.conftest import REDIS_URL
from tests.store.test_store_and_relay import apply, record


class RestartingRedis(RedisBroker):
    """A real Redis broker whose sends fail as they do while Redis restarts (the queue length
    still reads): redis-py's error for a connection the server closed."""

    refusing = True

    def enqueue(self, message, *, delay=None):  # type: ignore[no-untyped-def]
        if self.refusing:
            raise redis.exceptions.ConnectionError("Connection closed by server.")
        return super().enqueue(message, delay=delay)


def statuses(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(
            conn.execute(select(EventRow.status).where(EventRow.type == "meeting.booked")).scalars()
        )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scheduler_on(engine: Engine, clock: ManualClock, broker: RedisBroker) -> tuple[Runtime, Scheduler]:
    cfg = parse_config({"events": {"console": False}}, environ={})
    rt = Runtime(config=cfg, engine=engine, clock=clock, actors=declare(broker))
    scheduler = Scheduler(rt)
    scheduler.lead()
    assert scheduler._acting()
    return rt, scheduler


def one_line_each(records: list[logging.LogRecord]) -> list[str]:
    assert records, "the outage was not reported"
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in records), [
        (r.levelname, r.getMessage(), r.exc_info is not None) for r in records
    ]
    return [r.getMessage() for r in records]


@pytest.mark.redis
def test_a_send_the_broker_refuses_is_one_line_and_the_batch_goes_out_once_it_answers(
    engine: Engine, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    for i in range(3):
        apply(engine, clock, record(clock, f"m{i}"))  # three booked events due now
    broker = RestartingRedis(url=REDIS_URL, namespace=f"t-relay-down-{clock.now().timestamp()}")
    broker.client.flushdb()
    rt, scheduler = scheduler_on(engine, clock, broker)
    with caplog.at_level(logging.WARNING, logger="bookingsync"):
        scheduler.relay()
    messages = one_line_each([r for r in caplog.records if r.name.startswith("bookingsync")])
    assert any("the broker did not take the batch" in m for m in messages), messages
    assert brokers.waiting_messages(broker, QUEUE) == 0
    broker.refusing = False
    clock.advance(seconds=1)  # well inside the 30 s lease: only rows put back in line are claimed again
    scheduler.relay()
    assert brokers.waiting_messages(broker, QUEUE) == 1  # the three booked events, in one message
    scheduler.stop()
    rt.close()
    broker.client.flushdb()


def test_a_broker_that_does_not_answer_is_one_line_and_nothing_is_claimed(
    engine: Engine, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    apply(engine, clock, record(clock, "m0"))
    down = RedisBroker(url=f"redis://127.0.0.1:{closed_port()}/0")
    rt, scheduler = scheduler_on(engine, clock, down)
    with caplog.at_level(logging.WARNING, logger="bookingsync"):
        scheduler.relay()
    messages = one_line_each([r for r in caplog.records if r.name.startswith("bookingsync")])
    assert any("the broker did not answer" in m for m in messages), messages
    assert statuses(engine) == ["pending"]
    scheduler.stop()
    rt.close()
