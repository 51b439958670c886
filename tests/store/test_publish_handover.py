"""The publish actor hands a subscription's new deliveries to this process's lane itself; only
deliveries it cannot send there (a user's actor target, a lane already a message's worth behind,
or a failed hand-over) travel as messages.

Through the broker, a burst's deliveries waited in Redis behind the burst's own publish messages
(issue 6); the rows are leased either way, so a process that dies before sending them loses nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import Engine
from sqlmodel import select

from bookingsync.models.tables import DeliveryRow
from bookingsync.worker import delivery, runtime
from bookingsync.worker.actors import QUEUE, declare
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.config import parse_config
from bookingsync.worker.db import transaction
from bookingsync.worker.lanes import Lane
from bookingsync.worker.relay import MESSAGE_SIZE, claim
from bookingsync.worker.runtime import Runtime
from tests.store.test_deliveries import SECRET
from tests.store.test_store_and_relay import apply, record


@pytest.fixture
def rt(engine: Engine, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    cfg = parse_config(
        {
            "allow_private_targets": True,
            "subscriptions": [{"id": "crm", "url": "http://127.0.0.1:9/hooks", "secret": SECRET}],
            "actors": [{"actor_name": "crm_sync", "queue_name": "crm", "events": ["meeting.booked"]}],
        },
        environ={},
    )
    monkeypatch.setattr(runtime, "_current", None)  # restored after the test: the actors read it
    made = runtime.install(Runtime(config=cfg, engine=engine, clock=clock, actors=declare(StubBroker())))
    yield made
    made.close()


def deliveries(engine: Engine) -> dict[str, int]:
    with transaction(engine) as session:
        return {
            row.subscription_id: row.id for row in session.exec(select(DeliveryRow)) if row.id is not None
        }


def deliver_messages(rt: Runtime) -> list[list[int]]:
    broker = rt.actors.broker if rt.actors is not None else None
    assert isinstance(broker, StubBroker)
    return [
        message["args"][0]
        for message in map(json.loads, broker.queues[QUEUE].queue)
        if message["actor_name"] == "bookingsync.deliver"
    ]


def publish_due(rt: Runtime, clock: ManualClock) -> None:
    apply(rt.engine, clock, record(clock))
    event_ids = claim(rt.engine, clock.now(), lease_seconds=30, limit=10).events
    assert event_ids
    assert rt.actors is not None
    rt.actors.publish.fn(event_ids)


def test_a_subscriptions_deliveries_go_to_the_lane_without_a_message(
    rt: Runtime, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    handed: list[list[int]] = []
    monkeypatch.setattr(delivery, "dispatch", lambda _rt, ids: handed.append(list(ids)))
    publish_due(rt, clock)
    ids = deliveries(rt.engine)
    assert handed == [[ids["crm"]]]
    # The user's actor target is not a lane's: its delivery still goes as a deliver message.
    assert deliver_messages(rt) == [[ids["actor:crm:crm_sync"]]]


def test_a_failed_hand_over_sends_a_message_instead(
    rt: Runtime, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_rt: Any, _ids: list[int]) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(delivery, "dispatch", broken)
    publish_due(rt, clock)
    ids = deliveries(rt.engine)
    assert sorted(deliver_messages(rt)) == sorted([[ids["crm"]], [ids["actor:crm:crm_sync"]]])


def test_a_backed_up_lane_leaves_the_deliveries_to_another_worker(
    rt: Runtime, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    handed: list[list[int]] = []
    monkeypatch.setattr(delivery, "dispatch", lambda _rt, ids: handed.append(list(ids)))
    monkeypatch.setattr(Lane, "queued", property(lambda _lane: MESSAGE_SIZE))  # a message's worth unsent
    publish_due(rt, clock)
    ids = deliveries(rt.engine)
    assert handed == []
    assert sorted(deliver_messages(rt)) == sorted([[ids["crm"]], [ids["actor:crm:crm_sync"]]])
