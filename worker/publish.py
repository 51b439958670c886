"""Publishing a claimed event: fan it out to every subscription that wants it.

Each subscription, each dramatiq actor target and each route target (mirroring) gets a delivery row (unique per event and subscription, so a re-published
event never delivers twice under two ids); the rows are created already leased and handed to the
broker at once, and the relay picks up any whose message was lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import select

from bookingsync.models.tables import DeliveryRow, EventRow
from bookingsync.worker import feed, logs, metrics, reconcile, store
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


def publish(rt: Runtime, event_id: str) -> Published | None:
    now = rt.clock.now()
    lease = timedelta(seconds=rt.config.scheduler.lease_seconds)
    with transaction(rt.engine) as session:
        event = session.exec(select(EventRow).where(EventRow.event_id == event_id).with_for_update()).first()
        if event is None or event.status != "leased":
            return None  # cancelled meanwhile, or another worker already published it
        logs.bind(meeting=event.meeting_id)
        disabled = disabled_subscriptions(session)
        existing = {d.subscription_id for d in session.exec(select(DeliveryRow).where(DeliveryRow.event_id == event_id))}
        created = []
        targets = [(sub.id, sub.events) for sub in rt.config.subscriptions]
        targets += [(target.key, target.events) for target in rt.config.actors]
        origin = store.origin_connection(session, event.meeting_id) if rt.config.routes else None
        targets += [(route, (event.type,)) for route in reconcile.targets_for(rt.config, origin, event.type)]
        for target_id, wanted in targets:
            if event.type in wanted and target_id not in disabled and target_id not in existing:
                row = DeliveryRow(event_id=event_id, subscription_id=target_id, status="leased", due_at=now,
                                  lease_until=now + lease, attempts=1, created_at=now)
                session.add(row)
                created.append(row)
        event.status = "published"
        event.published_at = now
        metrics.published(event.type, event.due_at, now, timer=event.type in {t.value for t in TIMER_TYPES})
        event.lease_until = None
        feed.assign(session, [event])  # the last write: commit order from here (worker/feed.py)
        session.flush()
        return Published(event_id=event_id, type=event.type, body=event.payload, deliveries=[r.id for r in created])
