"""Outbound deliveries to subscribers, signed as Standard Webhooks.

Status → action:

    2xx                      succeeded
    410 Gone                 the subscription is disabled (no more deliveries) until re-enabled
    429, 5xx, timeout,
    connection error         retried with exponential backoff (capped), honouring Retry-After
    any other 4xx            dead at once: the endpoint refused this body; resending won't help
    retries exhausted        dead; `bookingsync deliveries list --dead` shows it, `replay` resends

`webhook-id` is the event id, identical across retries and replays, so a consumer can dedupe.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx
from sqlmodel import Session, col, select
from standardwebhooks.webhooks import Webhook

from bookingsync.models.tables import DeliveryRow, EventRow, SubscriptionStateRow
from bookingsync.worker import metrics, reconcile
from bookingsync.worker.config import DeliveryConfig, SubscriptionConfig
from bookingsync.worker.db import transaction
from bookingsync.worker.runtime import Runtime

log = logging.getLogger(__name__)
USER_AGENT = "bookingsync-webhooks/0.1"
MAX_DOUBLINGS = 40  # past this the backoff is at its cap anyway; keeps 2**n finite


@dataclass(frozen=True)
class Attempt:
    status_code: int | None  # None: no answer (timeout, connection refused, …)
    error: str | None = None
    retry_after: float | None = None


@dataclass(frozen=True)
class Decision:
    status: str  # succeeded | pending | dead | disabled
    due_at: datetime | None = None


def body_bytes(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def signed_headers(secret: str, event_id: str, body: bytes, now: datetime) -> dict[str, str]:
    signature = Webhook(secret).sign(event_id, now, body.decode())
    return {"webhook-id": event_id, "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature,
            "content-type": "application/json", "user-agent": USER_AGENT}


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - now).total_seconds())
    except (TypeError, ValueError):
        return None


def send(client: httpx.Client, url: str, headers: dict[str, str], body: bytes, now: datetime) -> Attempt:
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return Attempt(status_code=None, error=f"{type(exc).__name__}: {exc}")
    error = None if response.is_success else response.text[:500]
    return Attempt(status_code=response.status_code, error=error,
                   retry_after=retry_after_seconds(response.headers.get("retry-after"), now))


def decide(attempt: Attempt, attempts: int, cfg: DeliveryConfig, now: datetime) -> Decision:
    """Pure: what one attempt's outcome means for the delivery."""
    code = attempt.status_code
    if code is not None and 200 <= code < 300:
        return Decision("succeeded")
    if code == 410:
        return Decision("disabled")
    retryable = code is None or code == 429 or code >= 500
    if not retryable or attempts >= cfg.max_attempts:
        return Decision("dead")
    backoff = min(cfg.max_backoff_seconds, cfg.min_backoff_seconds * 2 ** min(attempts - 1, MAX_DOUBLINGS))
    if attempt.retry_after is not None:
        backoff = min(cfg.max_backoff_seconds, max(backoff, attempt.retry_after))
    return Decision("pending", due_at=now + timedelta(seconds=backoff))


def disabled_subscriptions(session: Session) -> set[str]:
    rows = session.exec(select(SubscriptionStateRow).where(col(SubscriptionStateRow.disabled_at).is_not(None)))
    return {row.subscription_id for row in rows}


def _disable(session: Session, subscription_id: str, reason: str, now: datetime) -> None:
    row = session.get(SubscriptionStateRow, subscription_id)
    if row is None:
        session.add(SubscriptionStateRow(subscription_id=subscription_id, disabled_at=now, disabled_reason=reason))
    else:
        row.disabled_at, row.disabled_reason = now, reason


def deliver(rt: Runtime, delivery_id: int) -> str | None:
    """One attempt at one delivery; the database row says whether it is ours to make.

    The target is a subscription (a signed POST), a dramatiq actor of the user's, or a route's
    target connection (mirroring, see worker/reconcile.py).
    """
    now = rt.clock.now()
    with transaction(rt.engine) as session:
        delivery = session.get(DeliveryRow, delivery_id)
        if delivery is None or delivery.status != "leased":
            return None
        event = session.exec(select(EventRow).where(EventRow.event_id == delivery.event_id)).one()
        target_id, attempts = delivery.subscription_id, delivery.attempts
        actor = rt.config.actor_target(target_id)
        if actor is not None and rt.actors is not None:
            # Enqueueing on the user's queue is the delivery; their broker retries from there.
            rt.actors.emit(actor.queue_name, actor.actor_name, event.payload)
            delivery.status, delivery.finished_at, delivery.lease_until = "succeeded", now, None
            return delivery.status
        if target_id.startswith(reconcile.ROUTE_PREFIX):
            route_target, meeting_id = target_id.removeprefix(reconcile.ROUTE_PREFIX), event.meeting_id
            subscription = None
        else:
            subscription = rt.config.subscription(target_id)
            if subscription is None or target_id in disabled_subscriptions(session):
                delivery.status, delivery.finished_at = "skipped", now
                delivery.last_error = "subscription removed from config or disabled"
                return delivery.status
            payload, event_id = event.payload, event.event_id
    if subscription is None:
        return _mirror(rt, delivery_id, meeting_id, route_target, attempts)
    return _attempt(rt, delivery_id, subscription, event_id, payload, attempts)


def _mirror(rt: Runtime, delivery_id: int, meeting_id: str, target: str, attempts: int) -> str:
    """A route delivery: converge the target's copy, with the same retry and dead-letter rules."""
    outcome = reconcile.converge(rt, meeting_id, target)
    now = rt.clock.now()
    if outcome.status == "retry":
        decision = decide(Attempt(status_code=503, error=outcome.detail, retry_after=outcome.retry_after), attempts,
                          rt.config.delivery, now)
    else:
        decision = Decision(outcome.status)
    with transaction(rt.engine) as session:
        delivery = session.get(DeliveryRow, delivery_id)
        if delivery is None:
            return "gone"
        delivery.last_error, delivery.lease_until = outcome.detail or None, None
        if decision.status == "pending":
            delivery.status, delivery.due_at = "pending", decision.due_at or now
        else:
            delivery.status, delivery.finished_at = decision.status, now
    return decision.status


def _attempt(rt: Runtime, delivery_id: int, subscription: SubscriptionConfig, event_id: str, payload: dict,
             attempts: int) -> str:
    body = body_bytes(payload)
    sent_at = rt.clock.now()
    attempt = send(rt.http, subscription.url, signed_headers(subscription.secret.get_secret_value(), event_id, body, sent_at), body,
                   sent_at)
    now = rt.clock.now()
    decision = decide(attempt, attempts, rt.config.delivery, now)
    metrics.delivered(subscription.id, decision.status, (now - sent_at).total_seconds())
    with transaction(rt.engine) as session:
        delivery = session.get(DeliveryRow, delivery_id)
        if delivery is None:
            return "gone"
        delivery.last_status_code = attempt.status_code
        delivery.last_error = attempt.error
        delivery.lease_until = None
        if decision.status == "disabled":
            _disable(session, subscription.id, f"{subscription.url} answered 410 Gone", now)
            delivery.status, delivery.finished_at = "skipped", now
        elif decision.status == "pending":
            delivery.status, delivery.due_at = "pending", decision.due_at or now
        else:
            delivery.status, delivery.finished_at = decision.status, now
    if decision.status != "succeeded":
        log.warning("delivery %s of %s to %s: %s (%s)", delivery_id, event_id, subscription.id, decision.status,
                    attempt.status_code or attempt.error)
    return decision.status


def replay(session: Session, now: datetime, *, delivery_id: int | None = None, all_dead: bool = False) -> int:
    """Put dead deliveries back in line, with a fresh attempt budget."""
    query = select(DeliveryRow).where(DeliveryRow.status == "dead")
    if delivery_id is not None:
        query = select(DeliveryRow).where(DeliveryRow.id == delivery_id,
                                          col(DeliveryRow.status).in_(["dead", "skipped"]))
    elif not all_dead:
        return 0
    rows = list(session.exec(query))
    for row in rows:
        row.status, row.due_at, row.attempts, row.finished_at, row.lease_until = "pending", now, 0, None, None
    return len(rows)
