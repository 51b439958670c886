"""Choosing the dramatiq broker from `broker.url`: in-process for `run`, Redis or RabbitMQ in production."""

from __future__ import annotations

from collections import defaultdict, deque

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.errors import BrokerConnectionError

# The in-process broker keeps every message that failed for good (with its exception and the
# frames its traceback holds) in a dead-letter list nobody reads: the database already has the
# work (the relay hands it out again), so `run` keeps only the newest few, for a debugger.
STUB_DEAD_LETTERS_KEPT = 100


# What a send or a queue read raises while the broker is down or restarting: Redis's own errors
# (dramatiq's Redis broker lets them through; a Redis still loading its data raises one too) and
# dramatiq's for RabbitMQ. A state to wait out, said in one line, not a bug with a traceback.
BROKER_UNAVAILABLE: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    BrokerConnectionError,
)


def make_broker(url: str) -> dramatiq.Broker:
    if url == "memory://":
        stub = StubBroker()
        # Read by each consumer when it is made, so set before the worker starts.
        stub.dead_letters_by_queue = defaultdict(lambda: deque(maxlen=STUB_DEAD_LETTERS_KEPT))  # type: ignore[arg-type,return-value]
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


# An idle Redis consumer polls its queue again after a back-off that doubles from 5 ms up to the
# worker's timeout (dramatiq's `worker_timeout`, also how long an idle worker thread waits).
# The pipeline's: a burst's first message waited up to a whole back-off in the queue, and a worker
# still backing off left the burst's deliveries to the other one (issue 6: 0.4-1.1 s from the due
# instant to the first delivery, one worker using 3-4 times the other's CPU). Each poll costs an
# idle worker about 0.5 ms of CPU: 50 ms tripled an idle worker's CPU (10 -> 33 ms a second),
# 100 ms about doubles it. The polls' queue can wait.
PIPELINE_IDLE_POLL_MS = 100
POLLS_IDLE_POLL_MS = 250


def start_worker(
    broker: dramatiq.Broker,
    threads: int,
    queues: set[str] | None = None,
    idle_poll_ms: int = POLLS_IDLE_POLL_MS,
) -> dramatiq.Worker:
    import dramatiq.worker

    dramatiq.worker.CONSUMER_RESTART_DELAY_SECS = CONSUMER_RESTART_DELAY_SECONDS
    worker = dramatiq.Worker(broker, queues=queues, worker_threads=threads, worker_timeout=idle_poll_ms)
    # As many messages taken as threads to run them, not dramatiq's twice as many: a burst's
    # messages were shared out unevenly (one PostgreSQL worker used twice the other's CPU while
    # the other's lane idled, issue 6); the rest wait in the queue for whichever worker is free.
    worker.queue_prefetch = threads
    worker.start()
    return worker


class Workers:
    """The pipeline's threads and the polls' threads of one process, started and stopped together."""

    def __init__(self, broker: dramatiq.Broker, threads: int, poll_threads: int) -> None:
        from bookingsync.worker.actors import QUEUE, poll_queue

        # Each pool consumes only its own queue: a poll waiting on a provider never holds a
        # thread a delivery needs, and a burst of deliveries never delays a poll tick.
        self.pipeline = start_worker(broker, threads, {QUEUE}, PIPELINE_IDLE_POLL_MS)
        self.polls = start_worker(broker, poll_threads, {poll_queue()}, POLLS_IDLE_POLL_MS)

    def stop(self) -> None:
        self.polls.stop()
        self.pipeline.stop()


def start_workers(broker: dramatiq.Broker, threads: int, poll_threads: int) -> Workers:
    return Workers(broker, threads, poll_threads)
