"""Events handed to a user's dramatiq actor are deliveries too: durable, once per event."""

from __future__ import annotations

import json

from dramatiq.brokers.stub import StubBroker
from sqlalchemy import Engine
from sqlmodel import select

from bookingsync.models.tables import DeliveryRow
from bookingsync.worker import delivery
from bookingsync.worker.actors import declare
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.config import parse_config
from bookingsync.worker.db import transaction
from bookingsync.worker.publish import publish
from bookingsync.worker.relay import claim
from bookingsync.worker.runtime import Runtime
from tests.store.test_store_and_relay import apply, record


def test_actor_target_receives_the_event_body_once(engine: Engine, clock: ManualClock) -> None:
    cfg = parse_config(
        {"actors": [{"actor_name": "crm_sync", "queue_name": "crm", "events": ["meeting.booked"]}]},
        environ={},
    )
    broker = StubBroker()
    rt = Runtime(config=cfg, engine=engine, clock=clock, actors=declare(broker))
    apply(engine, clock, record(clock))
    event_id = claim(engine, clock.now(), lease_seconds=30, limit=10).events[0]
    published = publish(rt, event_id)
    assert published is not None and len(published.deliveries) == 1
    assert delivery.deliver(rt, published.deliveries[0]) == "succeeded"
    assert delivery.deliver(rt, published.deliveries[0]) is None  # done: not ours to do again
    messages = list(broker.queues["crm"].queue)
    assert len(messages) == 1
    message = json.loads(messages[0])
    assert message["actor_name"] == "crm_sync" and message["args"][0]["type"] == "meeting.booked"
    assert message["args"][0]["data"]["event_id"] == event_id
    with transaction(engine) as session:
        row = session.exec(select(DeliveryRow)).one()
    assert row.subscription_id == "actor:crm:crm_sync" and row.status == "succeeded"
