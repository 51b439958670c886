"""Publishing claimed events: fan each out to every subscription that wants it, a batch at a time.

Each subscription, each dramatiq actor target and each route target (mirroring) gets a delivery
row (unique per event and subscription, so a re-published event never delivers twice under two
ids). One transaction per batch of events, in SQLAlchemy Core (no ORM objects): the events'
columns are read and locked in one query (skipping any another worker holds), the origin of every
meeting of the batch in one more when routes exist, the delivery rows go in with one bulk insert,
already leased so they can be handed to the broker at once, then the feed counter takes the
batch's positions with one update (worker/feed.py) and the events are marked published with their
positions in one executemany: the transaction's last writes. The relay picks up any delivery
whose message was lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import bindparam, func, insert, literal, select, update
from sqlalchemy.dialects import postgresql
from sqlmodel import Session

from bookingsync.models.tables import DeliveryRow, EventRow
from bookingsync.worker import feed, metrics, reconcile, store
from bookingsync.worker.db import transaction
from bookingsync.worker.lifecycle import TIMER_TYPES
from bookingsync.worker.delivery import disabled_subscriptions
from bookingsync.worker.runtime import Runtime
from bookingsync.worker.sql_lists import among, dialect_of


EVENTS, DELIVERIES = EventRow.__table__, DeliveryRow.__table__  # type: ignore[attr-defined]
E, D = EVENTS.c, DELIVERIES.c
_RETURNED = (D.id, D.event_id, D.subscription_id)
# On PostgreSQL the batch's deliveries go in as two arrays, one statement text for every batch
# size (a multi-row VALUES … RETURNING is a text per row count, each kept prepared: see
# worker/sql_lists.py); the other columns are the same for every row of a batch.
_INSERT_ARRAYS = (
    insert(DELIVERIES)
    .from_select(
        ["event_id", "subscription_id", "status", "due_at", "lease_until", "attempts", "created_at"],
        select(
            func.unnest(bindparam("event_ids", type_=postgresql.ARRAY(D.event_id.type))),
            func.unnest(bindparam("subscription_ids", type_=postgresql.ARRAY(D.subscription_id.type))),
            literal("leased"),
            bindparam("due_at", type_=D.due_at.type),
            bindparam("lease_until", type_=D.lease_until.type),
            literal(1),
            bindparam("created_at", type_=D.created_at.type),
        ),
    )
    .returning(*_RETURNED)
)


@dataclass
class _Event:
    """The columns of a leased event that publishing reads, and the feed position it is given."""

    id: int
    event_id: str
    meeting_id: str
    type: str
    due_at: datetime
    sequence: int | None
    payload: Any
    feed_position: int | None = None


@dataclass(frozen=True)
class Published:
    event_id: str
    type: str
    body: dict
    deliveries: list[int]
    # The same deliveries by target (subscription id, actor key or route:<connection>).
    targets: dict[int, str]


def publish_batch(rt: Runtime, event_ids: list[str]) -> list[Published]:
    """Publish those of `event_ids` that are still leased to be published; the others (cancelled
    meanwhile, or already published by another worker) are left alone."""
    if not event_ids:
        return []
    now = rt.clock.now()
    lease = timedelta(seconds=rt.config.scheduler.lease_seconds)
    with transaction(rt.engine) as session:
        query = (
            select(E.id, E.event_id, E.meeting_id, E.type, E.due_at, E.sequence, E.payload)
            .where(among(session, E.event_id, set(event_ids)), E.status == "leased")
            .order_by(E.id)
            .with_for_update(skip_locked=True)
        )
        events = [_Event(*row) for row in session.execute(query)]
        if not events:
            return []
        ids = [event.event_id for event in events]
        disabled = disabled_subscriptions(session)
        existing = {
            (row[0], row[1])
            for row in session.execute(
                select(D.event_id, D.subscription_id).where(among(session, D.event_id, ids))
            )
        }
        fixed = [(sub.id, sub.events) for sub in rt.config.subscriptions]
        fixed += [(target.key, target.events) for target in rt.config.actors]
        origins = (
            store.origin_connections(session, {e.meeting_id for e in events}) if rt.config.routes else {}
        )
        rows: list[dict[str, Any]] = []
        for event in events:
            targets = fixed
            if rt.config.routes:
                origin = origins.get(event.meeting_id)
                targets = fixed + [
                    (route, (event.type,)) for route in reconcile.targets_for(rt.config, origin, event.type)
                ]
            rows += [
                {
                    "event_id": event.event_id,
                    "subscription_id": target_id,
                    "status": "leased",
                    "due_at": now,
                    "lease_until": now + lease,
                    "attempts": 1,
                    "created_at": now,
                }
                for target_id, wanted in targets
                if event.type in wanted
                and target_id not in disabled
                and (event.event_id, target_id) not in existing
            ]
        created: dict[str, dict[int, str]] = {event_id: {} for event_id in ids}
        if rows:
            for delivery_id, event_id, target_id in _insert(session, rows, now, now + lease):
                created[event_id][delivery_id] = target_id
        timers = {t.value for t in TIMER_TYPES}
        for event in events:
            metrics.published(event.type, event.due_at, now, timer=event.type in timers)
        # The last writes: the feed counter, then the events with their positions (worker/feed.py).
        feed.assign(session, cast("list[Any]", events))
        session.execute(
            update(EVENTS)
            .where(E.id == bindparam("b_id"))
            .values(
                status="published", published_at=now, lease_until=None, feed_position=bindparam("b_position")
            ),
            [{"b_id": event.id, "b_position": event.feed_position} for event in events],
        )
        return [
            Published(
                event_id=event.event_id,
                type=event.type,
                body=event.payload,
                deliveries=sorted(created[event.event_id]),
                targets=created[event.event_id],
            )
            for event in events
        ]


def publish(rt: Runtime, event_id: str) -> Published | None:
    """Publish one event; None when it is not ours to publish."""
    published = publish_batch(rt, [event_id])
    return published[0] if published else None


def _insert(session: Session, rows: list[dict[str, Any]], now: datetime, lease_until: datetime) -> Any:
    """The delivery rows, leased until `lease_until`; their (id, event id, subscription id)."""
    if dialect_of(session) == "postgresql":
        return session.execute(
            _INSERT_ARRAYS,
            {
                "event_ids": [row["event_id"] for row in rows],
                "subscription_ids": [row["subscription_id"] for row in rows],
                "due_at": now,
                "lease_until": lease_until,
                "created_at": now,
            },
        )
    # SQLite: one single-row INSERT for every row (the driver's executemany, one text), then their
    # ids in one read; a multi-row VALUES … RETURNING would be a text per row count.
    session.execute(insert(DELIVERIES), rows)
    wanted = {(row["event_id"], row["subscription_id"]) for row in rows}
    stored = session.execute(
        select(*_RETURNED).where(among(session, D.event_id, {event_id for event_id, _ in wanted}))
    )
    return [row for row in stored if (row[1], row[2]) in wanted]
