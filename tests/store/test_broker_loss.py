"""The broker is a transport: flush Redis with messages in it and nothing is lost.

The relay hands an event to Redis under a lease; the queue is flushed before any worker reads
it; when the lease runs out the relay hands it over again, and the subscriber gets the event
once, under its one id.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import Engine

from bookingsync.worker.actors import declare
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.config import parse_config
from bookingsync.worker.relay import Senders, relay_once
from bookingsync.worker.runtime import Runtime, install
from tests.conftest import REDIS_URL, service_missing
from tests.e2e.support import SUBSCRIBER_SECRET, Subscriber, wait_until
from tests.store.test_store_and_relay import apply, record

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_broker() -> Iterator[RedisBroker]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_missing("Redis", str(exc))
    broker = RedisBroker(url=REDIS_URL, namespace=f"bs-test-{uuid.uuid4().hex[:8]}")
    yield broker
    broker.flush_all()
    broker.close()
    client.close()


def test_flushed_broker_loses_nothing(engine: Engine, redis_broker: RedisBroker) -> None:
    subscriber = Subscriber().start()
    clock = ManualClock(datetime.now(UTC))  # real time: subscribers check webhook-timestamp
    cfg = parse_config(
        {
            "allow_private_targets": True,
            "subscriptions": [{"id": "crm", "url": subscriber.url, "secret": SUBSCRIBER_SECRET}],
            "events": {"console": False},
        },
        environ={},
    )
    rt = install(Runtime(config=cfg, engine=engine, clock=clock, actors=declare(redis_broker)))
    actors = rt.actors
    assert actors is not None
    senders = Senders(publish=actors.publish.send, deliver=actors.deliver.send, ingest=actors.ingest.send)
    worker = None
    try:
        apply(engine, clock, record(clock, "lost-once"))
        first = relay_once(engine, clock.now(), senders, lease_seconds=30, limit=10)
        assert len(first.events) == 1
        redis_broker.flush_all()  # the message is gone before any worker saw it

        worker = dramatiq.Worker(redis_broker, worker_threads=2, worker_timeout=100)
        worker.start()
        assert (
            relay_once(engine, clock.now(), senders, lease_seconds=30, limit=10).events == []
        )  # still leased
        clock.advance(seconds=31)
        again = relay_once(engine, clock.now(), senders, lease_seconds=30, limit=10)
        assert again.events == first.events
        wait_until(lambda: subscriber.types_for("lost-once") == ["meeting.booked"], 20, "the re-sent event")
        # Let the clock pass another lease: a published event is never handed out again.
        clock.advance(seconds=31)
        assert relay_once(engine, clock.now(), senders, lease_seconds=30, limit=10).events == []
        ids = {item.headers["webhook-id"] for item in subscriber.received}
        assert ids == set(first.events)
    finally:
        if worker is not None:
            worker.stop()
        subscriber.stop()
