"""Choosing the dramatiq broker from `broker.url`: in-process for `run`, Redis or RabbitMQ in production."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker


def make_broker(url: str) -> dramatiq.Broker:
    if url == "memory://":
        broker: dramatiq.Broker = StubBroker()
    elif url.startswith(("amqp://", "amqps://")):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker  # imports pika, needed only here

        broker = RabbitmqBroker(url=url)
    else:
        broker = RedisBroker(url=url)
    dramatiq.set_broker(broker)
    return broker


# dramatiq restarts a consumer that lost its broker after 3 s (`dramatiq_restart_delay`); a Redis
# back from a restart should be consumed from within a second (issue 13: lost messages cost seconds).
CONSUMER_RESTART_DELAY_SECONDS = 0.5


def start_worker(broker: dramatiq.Broker, threads: int) -> dramatiq.Worker:
    import dramatiq.worker

    dramatiq.worker.CONSUMER_RESTART_DELAY_SECS = CONSUMER_RESTART_DELAY_SECONDS
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=250)
    worker.start()
    return worker
