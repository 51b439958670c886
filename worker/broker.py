"""Choosing the dramatiq broker from `broker.url`: in-process for `run`, Redis in production."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker


def make_broker(url: str) -> dramatiq.Broker:
    if url == "memory://":
        broker: dramatiq.Broker = StubBroker()
    else:
        broker = RedisBroker(url=url)
    dramatiq.set_broker(broker)
    return broker


def start_worker(broker: dramatiq.Broker, threads: int) -> dramatiq.Worker:
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=250)
    worker.start()
    return worker
