"""Choosing the dramatiq broker from `broker.url`: in-process for `run`, Redis or RabbitMQ in production."""

from __future__ import annotations

from collections import defaultdict, deque

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

# The in-process broker keeps every message that failed for good (with its exception and the
# frames its traceback holds) in a dead-letter list nobody reads: the database already has the
# work (the relay hands it out again), so `run` keeps only the newest few, for a debugger.
STUB_DEAD_LETTERS_KEPT = 100


def make_broker(url: str) -> dramatiq.Broker:
    if url == "memory://":
        stub = StubBroker()
        # Read by each consumer when it is made, so set before the worker starts.
        stub.dead_letters_by_queue = defaultdict(lambda: deque(maxlen=STUB_DEAD_LETTERS_KEPT))  # type: ignore[assignment]
        broker: dramatiq.Broker = stub
    elif url.startswith(("amqp://", "amqps://")):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker  # imports pika, needed only here

        broker = RabbitmqBroker(url=url)
    else:
        broker = RedisBroker(url=url)
    dramatiq.set_broker(broker)
    return broker


def start_worker(broker: dramatiq.Broker, threads: int) -> dramatiq.Worker:
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=250)
    worker.start()
    return worker
