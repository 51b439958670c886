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


def use_shared_pacing(url: str) -> None:
    """With a Redis broker, pace provider requests through it across every process (see README)."""
    from bookingsync.adapters import pacing

    if url.startswith(("redis://", "rediss://", "unix://")):
        from bookingsync.worker.pacing_redis import redis_backend

        pacing.use_backend(redis_backend(url))
    else:  # the in-process broker or RabbitMQ: each process paces on its own
        pacing.use_backend(None)


# dramatiq restarts a consumer that lost its broker after 3 s (`dramatiq_restart_delay`); a Redis
# back from a restart should be consumed from within a second (issue 13: lost messages cost seconds).
CONSUMER_RESTART_DELAY_SECONDS = 0.5


def start_worker(broker: dramatiq.Broker, threads: int, queues: set[str] | None = None) -> dramatiq.Worker:
    import dramatiq.worker

    dramatiq.worker.CONSUMER_RESTART_DELAY_SECS = CONSUMER_RESTART_DELAY_SECONDS
    worker = dramatiq.Worker(broker, queues=queues, worker_threads=threads, worker_timeout=250)
    worker.start()
    return worker


class Workers:
    """The pipeline's threads and the polls' threads of one process, started and stopped together."""

    def __init__(self, broker: dramatiq.Broker, threads: int, poll_threads: int) -> None:
        from bookingsync.worker.actors import QUEUE, poll_queue

        # Each pool consumes only its own queue: a poll waiting on a provider never holds a
        # thread a delivery needs, and a burst of deliveries never delays a poll tick.
        self.pipeline = start_worker(broker, threads, {QUEUE})
        self.polls = start_worker(broker, poll_threads, {poll_queue()})

    def stop(self) -> None:
        self.polls.stop()
        self.pipeline.stop()


def start_workers(broker: dramatiq.Broker, threads: int, poll_threads: int) -> Workers:
    return Workers(broker, threads, poll_threads)
