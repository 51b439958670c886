"""The dramatiq actors. Messages carry batches of ids only; the database rows decide whether there is work.

Two queues, each consumed by threads of its own (worker/broker.py `start_workers`): QUEUE for
the pipeline (publish, deliver, ingest) and `poll_queue()` for polls. A poll may wait for a
provider's allowance or read thousands of pages; on its own queue it can never hold a thread
that a delivery or an ingest needs, and a rate-limited read reschedules itself rather than
sleep (worker/poll.py), so one slow connection does not hold the poll threads either.

Actors are declared on the broker a process chose (`declare`), not at import time, so the same
code runs on the in-process broker of `bookingsync run` and on Redis.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import dramatiq
from rich.text import Text

from bookingsync.worker import delivery, ingest, poll, publish
from bookingsync.worker.relay import MESSAGE_SIZE, by_target, chunks
from bookingsync.worker.runtime import current

log = logging.getLogger(__name__)
QUEUE = "bookingsync"
# The database lease is the real retry mechanism; broker retries only smooth over blips.
ACTOR_OPTIONS: dict[str, Any] = {
    "max_retries": 3,
    "min_backoff": 500,
    "max_backoff": 5000,
    "time_limit": 120_000,
}
PUBLISH_PRIORITY = 10  # dramatiq: lower runs first; the other actors keep the default 0
# A read that is not rate-limited runs in one message however many pages it has (a first read of
# a large account): give it longer than the pipeline's actors. Its lease is heartbeated meanwhile.
POLL_TIME_LIMIT_MS = 900_000


def poll_queue() -> str:
    """The polls' queue, named after QUEUE (so a test that renames QUEUE renames both)."""
    return f"{QUEUE}-polls"


def _ids(batch: Any) -> list[Any]:
    """Messages carry a list of ids; one bare id (a message from before batching) is a batch of one."""
    return list(batch) if isinstance(batch, list | tuple) else [batch]


def _publish(event_ids: list[str]) -> None:
    rt = current()
    published = publish.publish_batch(rt, _ids(event_ids))
    if rt.actors is not None:
        targets = {delivery_id: target for item in published for delivery_id, target in item.targets.items()}
        for batch in by_target(sorted(targets), targets):
            for ids in chunks(batch, MESSAGE_SIZE):
                rt.actors.deliver.send(ids)
    if rt.config.events.console:
        for item in published:
            show(rt, item.body)


def show(rt: Any, body: dict) -> None:
    data = body["data"]
    meeting = data["meeting"]
    links = ", ".join(f"{link['connection']}:{link['external_id']}" for link in meeting["links"])
    line = Text()
    line.append(f"{body['type']:<20}", style="bold")
    line.append(
        f" #{data['sequence']:<3} {meeting['id']} {meeting['status']:<10} {meeting['start']} "
        f"{meeting['title'] or ''} "
    )
    line.append(links, style="dim")
    rt.console.print(line, soft_wrap=True)


def _deliver(delivery_ids: list[int]) -> None:
    delivery.dispatch(current(), _ids(delivery_ids))


def _ingest(receipt_ids: list[int]) -> None:
    rt = current()
    for receipt_id in _ids(receipt_ids):
        ingest.ingest_receipt(rt, receipt_id)


def _poll(connection_id: str, read: str | None = None) -> None:
    # `read`: the token of a read that rescheduled its next page (worker/poll.py).
    poll.poll(current(), connection_id, read, defer=True)


@dataclass(frozen=True)
class Actors:
    broker: dramatiq.Broker
    publish: dramatiq.Actor
    deliver: dramatiq.Actor
    ingest: dramatiq.Actor
    poll: dramatiq.Actor

    def emit(self, queue_name: str, actor_name: str, body: dict) -> None:
        """Hand an event to someone else's dramatiq actor (their workers consume the queue)."""
        self.broker.declare_queue(queue_name)
        self.broker.enqueue(
            dramatiq.Message(
                queue_name=queue_name, actor_name=actor_name, args=(body,), kwargs={}, options={}
            )
        )


def declare(broker: dramatiq.Broker) -> Actors:
    def make(fn: Any, name: str, priority: int = 0) -> dramatiq.Actor:
        return dramatiq.actor(
            fn,
            broker=broker,
            actor_name=f"bookingsync.{name}",
            queue_name=QUEUE,
            priority=priority,
            **ACTOR_OPTIONS,
        )

    polls = dramatiq.actor(
        _poll,
        broker=broker,
        actor_name="bookingsync.poll",
        queue_name=poll_queue(),
        **{**ACTOR_OPTIONS, "time_limit": POLL_TIME_LIMIT_MS},
    )
    return Actors(
        broker=broker,
        # Behind deliveries among the messages a worker has taken (dramatiq orders those by
        # priority, lower first): a burst's publish messages all arrive first, and a delivery
        # published by the first of them waited for the last (issue 6) instead of going out
        # while the rest publish.
        publish=make(_publish, "publish", priority=PUBLISH_PRIORITY),
        deliver=make(_deliver, "deliver"),
        ingest=make(_ingest, "ingest"),
        poll=polls,
    )
