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


def waiting_messages(broker: dramatiq.Broker, queue_name: str) -> int | None:
    """Messages in `queue_name` not yet taken by a worker (ready or delayed), where the broker can
    say cheaply: the in-process queue, or the length of a Redis list; None otherwise."""
    if isinstance(broker, StubBroker):
        return sum(q.qsize() for name, q in broker.queues.items() if name.split(".")[0] == queue_name)
    if isinstance(broker, RedisBroker):
        return int(broker.client.llen(f"{broker.namespace}:{queue_name}"))
    return None


def start_worker(broker: dramatiq.Broker, threads: int) -> dramatiq.Worker:
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=250)
    worker.start()
    return worker
