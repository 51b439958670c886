"""Batches through the relay and the publisher, on SQLite and PostgreSQL (the `engine` fixture).

The relay never has more than `max_in_flight` rows of a kind out at once (a burst waits in the
database, not in the broker), sends ids in messages of bounded size with deliveries grouped by
subscription, and hands lapsed leases out again first; `publish_batch` fans a whole batch out in
one go, once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, func, select, update

from bookingsync.models.tables import DeliveryRow, EventRow
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.config import parse_config
from bookingsync.worker.publish import publish_batch
from bookingsync.worker.relay import Senders, claim, relay_once
from bookingsync.worker.runtime import Runtime
from tests.store.test_store_and_relay import apply, record

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def leased(engine: Engine, model: Any) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(model).where(model.status == "leased")
        ).scalar_one()


def test_in_flight_is_capped_and_a_burst_waits_in_the_database(engine: Engine, clock: ManualClock) -> None:
    for i in range(120):
        apply(engine, clock, record(clock, f"m{i}"))  # 120 booked events due now
    seen: list[str] = []
    for _ in range(5):
        got = claim(engine, clock.now(), lease_seconds=30, limit=25, max_in_flight=60).events
        seen += got
        assert leased(engine, EventRow) <= 60
    assert len(seen) == 60 == len(set(seen))
    # Publishing frees room: the next claims take more, still never past the cap.
    with engine.begin() as conn:
        conn.execute(update(EventRow).where(EventRow.event_id.in_(seen[:40])).values(status="published"))
    more = claim(engine, clock.now(), lease_seconds=30, limit=100, max_in_flight=60).events
    assert len(more) == 40 and not set(more) & set(seen)
    # A lapsed lease no longer counts as in flight, and is handed out again before fresh work.
    later = clock.now() + timedelta(seconds=31)
    again = claim(engine, later, lease_seconds=30, limit=10, max_in_flight=60).events
    assert len(again) == 10 and set(again) <= set(seen[40:]) | set(more)


def test_messages_are_bounded_and_deliveries_grouped_by_subscription(
    engine: Engine, clock: ManualClock
) -> None:
    cfg = parse_config(
        {
            "subscriptions": [
                {"id": "crm", "url": "http://127.0.0.1:9/a", "secret": SECRET},
                {"id": "ops", "url": "http://127.0.0.1:9/b", "secret": SECRET},
            ],
            "events": {"console": False},
            "allow_private_targets": True,
        },
        environ={},
    )
    rt = Runtime(config=cfg, engine=engine, clock=clock)
    for i in range(7):
        apply(engine, clock, record(clock, f"m{i}"))
    sent: dict[str, list[list[Any]]] = {"publish": [], "deliver": [], "ingest": []}
    senders = Senders(
        publish=sent["publish"].append, deliver=sent["deliver"].append, ingest=sent["ingest"].append
    )
    claimed = relay_once(engine, clock.now(), senders, lease_seconds=30, limit=100, message_size=3)
    assert [len(batch) for batch in sent["publish"]] == [3, 3, 1]
    assert [e for batch in sent["publish"] for e in batch] == claimed.events

    published = publish_batch(rt, claimed.events)
    assert len(published) == 7 and all(len(p.deliveries) == 2 for p in published)
    assert publish_batch(rt, claimed.events) == []  # published already: nothing twice
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(DeliveryRow)).scalar_one() == 14
        assert (
            conn.execute(
                select(func.count()).select_from(EventRow).where(EventRow.status == "published")
            ).scalar_one()
            == 7
        )
    # Leases lapse: the relay hands the deliveries out again, one subscription per message.
    with engine.begin() as conn:
        conn.execute(update(DeliveryRow).values(lease_until=clock.now()))
    relay_once(
        engine, clock.now() + timedelta(seconds=1), senders, lease_seconds=30, limit=100, message_size=3
    )
    targets = {d: t for p in published for d, t in p.targets.items()}
    assert sorted(len(batch) for batch in sent["deliver"]) == [1, 1, 3, 3, 3, 3]
    assert all(len({targets[d] for d in batch}) == 1 for batch in sent["deliver"])
    assert sorted(d for batch in sent["deliver"] for d in batch) == sorted(targets)
    rt.close()


def test_a_burst_is_claimed_and_sent_a_message_at_a_time(engine: Engine, clock: ManualClock) -> None:
    # Each message goes out before the next message's events are claimed (issue 6): a claim of the
    # whole burst in one transaction held SQLite's write lock for all of it, and sent nothing until
    # the last event was numbered.
    for i in range(7):
        apply(engine, clock, record(clock, f"m{i}"))
    leased_when_sent: list[int] = []

    def publish(batch: list[str]) -> None:
        leased_when_sent.append(leased(engine, EventRow))

    senders = Senders(publish=publish, deliver=lambda batch: None, ingest=lambda batch: None)
    claimed = relay_once(engine, clock.now(), senders, lease_seconds=30, limit=100, message_size=3)
    assert len(claimed.events) == 7 == len(set(claimed.events))
    assert leased_when_sent == [3, 6, 7]
