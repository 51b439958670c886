"""Publishing claimed events: fan each out to every subscription that wants it, a batch at a time.

Each subscription, each dramatiq actor target and each route target (mirroring) gets a delivery
row (unique per event and subscription, so a re-published event never delivers twice under two
ids). One transaction per batch of events: the events are locked (skipping any another worker
holds), the delivery rows go in with one bulk insert, already leased so they can be handed to the
broker at once, the events are marked published (one flush) and get their feed positions with
one counter update, the transaction's last write (worker/feed.py). The relay picks up any
delivery whose message was lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy import select as sa_select
from sqlmodel import col, select

from bookingsync.models.tables import DeliveryRow, EventRow
from bookingsync.worker import feed, metrics, reconcile, store
from bookingsync.worker.lifecycle import TIMER_TYPES
from bookingsync.worker.db import transaction
from bookingsync.worker.delivery import disabled_subscriptions
from bookingsync.worker.runtime import Runtime


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
    d = DeliveryRow.__table__.c  # type: ignore[attr-defined]
    with transaction(rt.engine) as session:
        query = (
            select(EventRow)
            .where(col(EventRow.event_id).in_(sorted(set(event_ids))), col(EventRow.status) == "leased")
            .order_by(col(EventRow.id))
            .with_for_update(skip_locked=True)
        )
        events = list(session.exec(query))
        if not events:
            return []
        ids = [event.event_id for event in events]
        disabled = disabled_subscriptions(session)
        existing = {
            (row[0], row[1])
            for row in session.execute(sa_select(d.event_id, d.subscription_id).where(d.event_id.in_(ids)))
        }
        fixed = [(sub.id, sub.events) for sub in rt.config.subscriptions]
        fixed += [(target.key, target.events) for target in rt.config.actors]
        rows: list[dict[str, Any]] = []
        for event in events:
            targets = fixed
            if rt.config.routes:
                origin = store.origin_connection(session, event.meeting_id)
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
            returned = session.execute(
                insert(DeliveryRow).returning(d.id, d.event_id, d.subscription_id), rows
            )
            for delivery_id, event_id, target_id in returned:
                created[event_id][delivery_id] = target_id
        timers = {t.value for t in TIMER_TYPES}
        for event in events:
            event.status, event.published_at, event.lease_until = "published", now, None
            metrics.published(event.type, event.due_at, now, timer=event.type in timers)
        feed.assign(session, events)  # the last write: commit order from here (worker/feed.py)
        session.flush()
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
