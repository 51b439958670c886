"""Sending events again: one delivery, a subscription's events from a time, and what a disabled
subscription missed, when it is re-enabled. The caller owns the transaction.

Everything here only puts delivery rows back in line (`pending`, due now, a fresh attempt
budget); the relay and the deliver actor send them as any other, with the same `webhook-id`.

Re-enabling (`enable`). While a subscription is disabled (its endpoint answered 410), publishing
gives it no delivery row and deliveries already in line are skipped at their next attempt. On
re-enable both come back:

* its `skipped` rows finished since it was disabled are queued again (the 410 one included), and
* every event it wants that was published since it was disabled and has no row for it gets one.

"Since it was disabled" is `disabled_at` minus `scheduler.lease_seconds`: a publisher takes its
timestamp before it reads the disabled set, so an event it left out can carry a time a little
before `disabled_at` (and hosts' clocks differ by a little). The widening can only add an event
the subscription did not exist for yet: an extra delivery, never a lost one.

The race with publishing: a publisher that read "disabled" just before the re-enable committed,
but commits after the missed events were counted, would leave one out for good. On PostgreSQL
the re-enable first takes `LOCK TABLE subscription_states IN ACCESS EXCLUSIVE MODE`: a publisher
holds its read lock on that table until it commits, so the re-enable waits for every publisher
that has already read the set, and the ones that have not read it yet wait for the re-enable and
then see the subscription enabled. On SQLite one writer runs at a time, so there is no race.

A new subscription gets no history: it receives what is published after it appears. History is
there when asked for, with `replay_since`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, func, insert, literal, text, update
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

from bookingsync.models.columns import UTCDateTime
from bookingsync.models.errors import Conflict, NotFound
from bookingsync.models.tables import DeliveryRow, EventRow, SubscriptionStateRow
from bookingsync.worker import reconcile
from bookingsync.worker.config import Config, SubscriptionConfig

# A delivery in one of these is waiting or being sent: replaying it would only duplicate it.
QUEUED = ("pending", "leased")
FINISHED = ("succeeded", "dead", "skipped")
# Statuses counted as a subscription's backlog (succeeded rows are history, not backlog).
BACKLOG = ("pending", "leased", "dead", "skipped")
LOCK_TIMEOUT = "10s"  # how long a re-enable waits for in-flight publishers before giving up


@dataclass(frozen=True)
class Enabled:
    subscription_id: str
    was_disabled: bool
    requeued: int = 0  # skipped rows put back in line
    created: int = 0  # events published while disabled, given a delivery now


def _requeue(**extra: object) -> dict[str, object]:
    return {"status": "pending", "attempts": 0, "finished_at": None, "lease_until": None, **extra}


def _subscription(cfg: Config, subscription_id: str) -> SubscriptionConfig:
    subscription = cfg.subscription(subscription_id)
    if subscription is None:
        raise NotFound(f"no subscription named {subscription_id!r} is configured")
    return subscription


def is_disabled(session: Session, subscription_id: str) -> bool:
    state = session.get(SubscriptionStateRow, subscription_id)
    return state is not None and state.disabled_at is not None


def replay_one(session: Session, cfg: Config, delivery_id: int, now: datetime) -> DeliveryRow:
    """Queue one finished delivery again (succeeded, dead or skipped)."""
    row = session.exec(select(DeliveryRow).where(DeliveryRow.id == delivery_id).with_for_update()).first()
    if row is None:
        raise NotFound(f"delivery {delivery_id} does not exist")
    if row.status in QUEUED:
        raise Conflict(f"delivery {delivery_id} is already {row.status}; it will be sent without a replay")
    target = row.subscription_id
    routed = target.startswith(reconcile.ROUTE_PREFIX) or cfg.actor_target(target) is not None
    if not routed:
        _subscription(cfg, target)
        if is_disabled(session, target):
            raise Conflict(
                f"subscription {target!r} is disabled; enable it first (its missed events come with it)"
            )
    for name, value in _requeue(due_at=now, last_error=None).items():
        setattr(row, name, value)
    return row


def _create_missing(
    session: Session, subscription: SubscriptionConfig, since: datetime, now: datetime
) -> int:
    """A pending delivery for every wanted event published since `since` that has none for it."""
    has_row = exists().where(
        col(DeliveryRow.event_id) == col(EventRow.event_id),
        col(DeliveryRow.subscription_id) == subscription.id,
    )
    missing = select(
        col(EventRow.event_id),
        literal(subscription.id),
        literal("pending"),
        literal(now, UTCDateTime()),
        literal(0),
        literal(now, UTCDateTime()),
    ).where(
        col(EventRow.status) == "published",
        col(EventRow.published_at) >= since,
        col(EventRow.type).in_([kind.value for kind in subscription.events]),
        ~has_row,
    )
    columns = ["event_id", "subscription_id", "status", "due_at", "attempts", "created_at"]
    # RETURNING counts on every backend (an ORM INSERT … SELECT reports no rowcount on psycopg).
    created = session.execute(
        insert(DeliveryRow).from_select(columns, missing).returning(col(DeliveryRow.id))
    )
    return len(created.all())


def replay_since(session: Session, cfg: Config, subscription_id: str, since: datetime, now: datetime) -> int:
    """Send a subscription every event it wants published at or after `since` again; the count.

    Events it already had are queued again (same `webhook-id`); events from before it existed get
    their first delivery. Deliveries still in line are left alone.
    """
    subscription = _subscription(cfg, subscription_id)
    if is_disabled(session, subscription_id):
        raise Conflict(f"subscription {subscription_id!r} is disabled; enable it first")
    since_events = select(EventRow.event_id).where(
        col(EventRow.status) == "published", col(EventRow.published_at) >= since
    )
    requeued = session.execute(
        update(DeliveryRow)
        .where(
            col(DeliveryRow.subscription_id) == subscription_id,
            col(DeliveryRow.status).in_(FINISHED),
            col(DeliveryRow.event_id).in_(since_events),
        )
        .values(**_requeue(due_at=now, last_error=None))
    )
    return int(requeued.rowcount or 0) + _create_missing(session, subscription, since, now)


def _hold_publishers(session: Session) -> None:
    """PostgreSQL: wait for every publisher that already read the disabled set (module docstring)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    try:
        session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        session.execute(text("LOCK TABLE subscription_states IN ACCESS EXCLUSIVE MODE"))
    except OperationalError as exc:
        raise Conflict(f"publishing kept the subscriptions busy for {LOCK_TIMEOUT}; try again") from exc


def enable(session: Session, cfg: Config, subscription_id: str, now: datetime) -> Enabled:
    """Re-enable a subscription its endpoint disabled (410), with what it missed meanwhile."""
    subscription = _subscription(cfg, subscription_id)
    _hold_publishers(session)
    state = session.get(SubscriptionStateRow, subscription_id)
    if state is None or state.disabled_at is None:
        return Enabled(subscription_id, was_disabled=False)
    since = state.disabled_at - timedelta(seconds=cfg.scheduler.lease_seconds)
    requeued = session.execute(
        update(DeliveryRow)
        .where(
            col(DeliveryRow.subscription_id) == subscription_id,
            col(DeliveryRow.status) == "skipped",
            col(DeliveryRow.finished_at) >= since,
        )
        .values(**_requeue(due_at=now, last_error=None))
    )
    created = _create_missing(session, subscription, since, now)
    state.disabled_at, state.disabled_reason = None, None
    return Enabled(subscription_id, was_disabled=True, requeued=int(requeued.rowcount or 0), created=created)


@dataclass(frozen=True)
class Backlog:
    by_status: dict[str, int]
    oldest_due: datetime | None  # the longest-waiting pending delivery


def backlogs(session: Session) -> dict[str, Backlog]:
    """Per delivery target: rows waiting, being sent, dead or skipped, and the oldest pending."""
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    query = (
        select(DeliveryRow.subscription_id, DeliveryRow.status, func.count())
        .where(col(DeliveryRow.status).in_(BACKLOG))
        .group_by(col(DeliveryRow.subscription_id), col(DeliveryRow.status))
    )
    for target, status, count in session.exec(query):
        counts[target][status] = count
    oldest = dict(
        session.exec(
            select(DeliveryRow.subscription_id, func.min(DeliveryRow.due_at))
            .where(DeliveryRow.status == "pending")
            .group_by(col(DeliveryRow.subscription_id))
        ).all()
    )
    return {
        target: Backlog(by_status=dict(by_status), oldest_due=oldest.get(target))
        for target, by_status in counts.items()
    }
