"""RabbitMQ as the broker (`amqp://`, dramatiq's own RabbitmqBroker), against the real server.

The same promise as with Redis: the broker is a transport. Events go through RabbitMQ to a
worker and out to a subscriber; a purged queue loses nothing, because the relay hands the event
over again when its lease runs out. Each test uses queues of its own (and deletes them), so
parallel runs on one server do not collide.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import dramatiq
import pika
import pytest
from sqlalchemy import Engine

from bookingsync.worker import actors as actors_module
from bookingsync.worker.broker import make_broker
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.config import parse_config
from bookingsync.worker.probes import broker_problem
from bookingsync.worker.relay import Senders, relay_once
from bookingsync.worker.runtime import Runtime, install
from tests.conftest import RABBITMQ_URL, service_missing
from tests.e2e.support import SUBSCRIBER_SECRET, Subscriber, free_port, wait_until
from tests.store.test_store_and_relay import apply, record

pytestmark = pytest.mark.rabbitmq


def _delete_queues(names: list[str]) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    try:
        channel = connection.channel()
        for name in names:
            channel.queue_delete(name)
    finally:
        connection.close()


@pytest.fixture
def queue(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    problem = broker_problem(RABBITMQ_URL)
    if problem is not None:
        service_missing("RabbitMQ", problem)
    name = f"bookingsync-test-{uuid.uuid4().hex[:10]}"
    monkeypatch.setattr(actors_module, "QUEUE", name)  # the actors declare their queue from it
    yield name
    _delete_queues([name, f"{name}.DQ", f"{name}.XQ"])


def test_broker_url_answers_and_a_closed_port_is_named_quickly(queue: str) -> None:
    assert broker_problem(RABBITMQ_URL) is None
    started = time.monotonic()
    problem = broker_problem(f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F")
    assert problem is not None and time.monotonic() - started < 5
    assert "guest:guest" not in problem


def test_events_travel_through_rabbitmq_and_a_purged_queue_loses_nothing(engine: Engine, queue: str) -> None:
    subscriber = Subscriber().start()
    clock = ManualClock(datetime.now(UTC))  # real time: the subscriber checks webhook-timestamp
    cfg = parse_config(
        {
            "allow_private_targets": True,
            "broker": {"url": RABBITMQ_URL},
            "subscriptions": [{"id": "crm", "url": subscriber.url, "secret": SUBSCRIBER_SECRET}],
            "events": {"console": False},
        },
        environ={},
    )
    broker = make_broker(cfg.broker.url)
    assert type(broker).__name__ == "RabbitmqBroker"
    rt = install(Runtime(config=cfg, engine=engine, clock=clock, actors=actors_module.declare(broker)))
    actors = rt.actors
    assert actors is not None and actors.publish.queue_name == queue
    senders = Senders(publish=actors.publish.send, deliver=actors.deliver.send, ingest=actors.ingest.send)
    worker = None
    try:
        apply(engine, clock, record(clock, "via-rabbit"))
        first = relay_once(engine, clock.now(), senders, lease_seconds=30, limit=10)
        assert len(first.events) == 1
        # The message sits in RabbitMQ; purge it before any worker reads it.
        wait_until(lambda: broker.get_queue_message_counts(queue)[0] == 1, 10, "the message in RabbitMQ")
        connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
        connection.channel().queue_purge(queue)
        connection.close()

        worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=100)
        worker.start()
        clock.advance(seconds=31)  # the lease runs out: the relay hands the event over again
        again = relay_once(engine, clock.now(), senders, lease_seconds=30, limit=10)
        assert again.events == first.events
        wait_until(
            lambda: subscriber.types_for("via-rabbit") == ["meeting.booked"], 30, "the event via RabbitMQ"
        )
        assert {item.headers["webhook-id"] for item in subscriber.received} == set(first.events)
        assert not subscriber.rejected
    finally:
        if worker is not None:
            worker.stop()
        broker.close()
        subscriber.stop()
