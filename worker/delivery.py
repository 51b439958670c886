"""Outbound deliveries to subscribers, signed as Standard Webhooks.

Status → action:

    2xx                      succeeded
    410 Gone                 the subscription is disabled (no more deliveries) until re-enabled
    429, 5xx, timeout,
    connection error         retried with exponential backoff (capped), honouring Retry-After
    any other 4xx            dead at once: the endpoint refused this body; resending won't help
    retries exhausted        dead; `bookingsync deliveries list --dead` shows it, `replay` resends

`webhook-id` is the event id, identical across retries and replays, so a consumer can dedupe.

A worker takes deliveries a batch at a time (`dispatch`): one query loads the batch with its
events' bodies; actor targets and removed or disabled subscriptions are settled in one write;
routes are mirrored (worker/reconcile.py); webhooks go to their subscription's lane
(worker/lanes.py), whose senders POST them and hand the outcomes to a group-commit writer
(`write_outcomes`: one UPDATE for many rows, only over rows still leased). `deliver` makes one
attempt in the calling thread, through the same steps.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpcore
import httpx
from sqlalchemy import Connection, CursorResult, bindparam, func, insert, update
from sqlmodel import Session, col, select
from standardwebhooks.webhooks import Webhook

from bookingsync.adapters.http_dates import parse_retry_after
from bookingsync.models.tables import DeliveryRow, EventRow, SubscriptionStateRow
from bookingsync.worker import metrics, reconcile
from bookingsync.worker.clock import Clock
from bookingsync.worker.config import DeliveryConfig, SubscriptionConfig
from bookingsync.worker.db import transaction
from bookingsync.worker.runtime import Runtime
from bookingsync.worker.sql_lists import among

try:  # httpx's mapping of httpcore's errors to its own: private, so a release may move it
    from httpx._transports.default import map_httpcore_exceptions
except ImportError:  # pragma: no cover - then every POST takes the transport's public path
    map_httpcore_exceptions = None  # type: ignore[assignment]

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


# A signer per secret: decoding the secret for every delivery was a tenth of signing it.
_signer = functools.lru_cache(maxsize=256)(Webhook)


def signed_headers(secret: str, event_id: str, body: bytes, now: datetime) -> dict[str, str]:
    signature = _signer(secret).sign(event_id, now, body)
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Seconds a subscriber asks us to wait (its Retry-After), parsed as the providers' are."""
    return parse_retry_after(value, reference=now)


@functools.lru_cache(maxsize=1024)
def _url(text: str) -> httpx.URL:
    return httpx.URL(text)


@functools.lru_cache(maxsize=1024)
def _core_url(text: str) -> httpcore.URL:
    url = _url(text)
    return httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path)


def send(
    transport: httpx.BaseTransport,
    url: str,
    headers: dict[str, str],
    body: bytes,
    now: datetime,
    timeout: float,
) -> Attempt:
    """One POST straight through the transport (worker/egress.py): a delivery needs none of what
    an `httpx.Client` adds per request (merged default headers, a cookie jar, auth and redirect
    handling), and that layer cost a third of the CPU of a POST to a sink on loopback (issue 6).
    Through an httpx transport's own connection pool when it has one (`_send_core`)."""
    pool = getattr(transport, "_pool", None)
    if (
        map_httpcore_exceptions is not None
        and isinstance(transport, httpx.HTTPTransport)
        and isinstance(pool, httpcore.ConnectionPool)
    ):
        return _send_core(pool, url, headers, body, now, timeout)
    request = httpx.Request(
        "POST",
        _url(url),
        headers=headers,
        content=body,
        extensions={"timeout": httpx.Timeout(timeout).as_dict()},
    )
    try:
        response = transport.handle_request(request)
        try:
            response.read()
        finally:
            response.close()
    except httpx.HTTPError as exc:
        return Attempt(status_code=None, error=f"{type(exc).__name__}: {exc}")
    error = None if response.is_success else response.text[:500]
    return Attempt(
        status_code=response.status_code,
        error=error,
        retry_after=retry_after_seconds(response.headers.get("retry-after"), now),
    )


def _send_core(
    pool: httpcore.ConnectionPool,
    url: str,
    headers: dict[str, str],
    body: bytes,
    now: datetime,
    timeout: float,
) -> Attempt:
    """`send` through httpcore, as httpx's transport does it, without httpx's request and response
    objects around it: they were a quarter of a delivery's HTTP CPU to a sink on loopback (issue 6).
    httpcore's errors become httpx's, as the transport makes them."""
    request = httpcore.Request(
        b"POST",
        _core_url(url),
        headers=[(b"host", _url(url).netloc)]
        + [(name.encode(), value.encode()) for name, value in headers.items()]
        + [(b"content-length", str(len(body)).encode())],
        content=body,
        extensions={"timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}},
    )
    try:
        with map_httpcore_exceptions():
            response = pool.handle_request(request)
            try:
                content = response.read()
            finally:
                response.close()
    except httpx.HTTPError as exc:
        return Attempt(status_code=None, error=f"{type(exc).__name__}: {exc}")
    code = response.status
    retry_after = next((value for name, value in response.headers if name.lower() == b"retry-after"), None)
    return Attempt(
        status_code=code,
        error=None if 200 <= code < 300 else content.decode("utf-8", errors="replace")[:500],
        retry_after=None if retry_after is None else retry_after_seconds(retry_after.decode("latin-1"), now),
    )


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


def disabled_subscriptions(session: Session | Connection) -> set[str]:
    query = select(SubscriptionStateRow.subscription_id).where(
        col(SubscriptionStateRow.disabled_at).is_not(None)
    )
    return set(session.execute(query).scalars())


# --- one batch of leased deliveries -------------------------------------------------------------


@dataclass(frozen=True)
class Leased:
    """A delivery a message handed to us, as loaded for its attempt."""

    delivery_id: int
    target: str  # a subscription id, an actor key or route:<connection>
    event_id: str
    meeting_id: str
    attempts: int
    lease_until: datetime | None
    payload: dict


@dataclass(frozen=True)
class Outcome:
    """What to write back for one delivery; `write_outcomes` stores many in one statement."""

    delivery_id: int
    status: str  # succeeded | pending | dead | skipped
    due_at: datetime | None = None
    finished_at: datetime | None = None
    status_code: int | None = None
    error: str | None = None
    # A deferral (breaker open, lane full, lease too old): the row goes back to pending without
    # the attempt its claim counted, and only if nobody claimed it again meanwhile.
    attempts: int | None = None
    disable: tuple[str, str] | None = None  # (subscription, reason): its endpoint answered 410


def load(conn: Session | Connection, delivery_ids: list[int]) -> list[Leased]:
    """The leased ones among `delivery_ids` with their events' bodies, in one query."""
    if not delivery_ids:
        return []
    d, e = DeliveryRow.__table__.c, EventRow.__table__.c  # type: ignore[attr-defined]
    query = (
        select(d.id, d.subscription_id, d.event_id, e.meeting_id, d.attempts, d.lease_until, e.payload)
        .join_from(DeliveryRow.__table__, EventRow.__table__, e.event_id == d.event_id)  # type: ignore[attr-defined]
        .where(among(conn, d.id, set(delivery_ids)), d.status == "leased")
        .order_by(d.id)
    )
    return [Leased(*row) for row in conn.execute(query)]


def finished(delivery_id: int, status: str, now: datetime, error: str | None = None) -> Outcome:
    return Outcome(delivery_id, status, finished_at=now, error=error)


def deferred(item: Leased, until: datetime) -> Outcome:
    return Outcome(item.delivery_id, "pending", due_at=until, attempts=item.attempts)


def attempt(
    transport: httpx.BaseTransport,
    subscription: SubscriptionConfig,
    item: Leased,
    cfg: DeliveryConfig,
    clock: Clock,
) -> tuple[Outcome, Attempt, Decision]:
    """One signed POST of one delivery, and what its answer means (nothing is written here)."""
    body = body_bytes(item.payload)
    sent_at = clock.now()
    headers = signed_headers(subscription.secret.get_secret_value(), item.event_id, body, sent_at)
    answer = send(transport, subscription.url, headers, body, sent_at, cfg.timeout_seconds)
    now = clock.now()
    decision = decide(answer, item.attempts, cfg, now)
    metrics.delivered(subscription.id, decision.status, (now - sent_at).total_seconds())
    outcome = Outcome(item.delivery_id, decision.status, status_code=answer.status_code, error=answer.error)
    if decision.status == "disabled":
        outcome = replace(
            outcome,
            status="skipped",
            finished_at=now,
            disable=(subscription.id, f"{subscription.url} answered 410 Gone"),
        )
    elif decision.status == "pending":
        outcome = replace(outcome, due_at=decision.due_at or now)
    else:
        outcome = replace(outcome, finished_at=now)
    if decision.status != "succeeded":
        log.warning(
            "delivery %s of %s to %s: %s (%s)",
            item.delivery_id,
            item.event_id,
            subscription.id,
            decision.status,
            answer.status_code or answer.error,
        )
    return outcome, answer, decision


def write_outcomes(conn: Connection, outcomes: Sequence[Outcome]) -> list[None]:
    """Store a batch of outcomes: one UPDATE executed for many rows, only over rows still leased."""
    table = DeliveryRow.__table__  # type: ignore[attr-defined]
    c = table.c
    final = [
        {
            "b_id": o.delivery_id,
            "b_status": o.status,
            "b_due": o.due_at,
            "b_finished": o.finished_at,
            "b_code": o.status_code,
            "b_error": o.error,
        }
        for o in outcomes
        if o.attempts is None
    ]
    if final:
        conn.execute(
            update(table)
            .where(c.id == bindparam("b_id"), c.status == "leased")
            .values(
                status=bindparam("b_status"),
                due_at=func.coalesce(bindparam("b_due", type_=c.due_at.type), c.due_at),
                finished_at=bindparam("b_finished"),
                last_status_code=bindparam("b_code"),
                last_error=bindparam("b_error"),
                lease_until=None,
            )
            .execution_options(synchronize_session=False),
            final,
        )
    back = [
        {"b_id": o.delivery_id, "b_due": o.due_at, "b_attempts": o.attempts}
        for o in outcomes
        if o.attempts is not None
    ]
    if back:
        conn.execute(
            update(table)
            .where(c.id == bindparam("b_id"), c.status == "leased", c.attempts == bindparam("b_attempts"))
            .values(status="pending", due_at=bindparam("b_due"), lease_until=None, attempts=c.attempts - 1),
            back,
        )
    for outcome in outcomes:
        if outcome.disable is not None:
            _disable(conn, *outcome.disable, outcome.finished_at or datetime.now(UTC))
    return [None] * len(outcomes)


def _disable(conn: Connection, subscription_id: str, reason: str, now: datetime) -> None:
    table = SubscriptionStateRow.__table__  # type: ignore[attr-defined]
    changed = conn.execute(
        update(table)
        .where(table.c.subscription_id == subscription_id)
        .values(disabled_at=now, disabled_reason=reason)
    ).rowcount
    if not changed:
        conn.execute(
            insert(table).values(subscription_id=subscription_id, disabled_at=now, disabled_reason=reason)
        )


@dataclass
class Sorted:
    """A batch split by target kind."""

    done: list[Outcome]  # actor targets handed over, removed or disabled subscriptions skipped
    routes: list[Leased]
    webhooks: dict[str, list[Leased]]  # by subscription id


def sort_out(rt: Runtime, conn: Connection, items: list[Leased]) -> Sorted:
    now = rt.clock.now()
    out = Sorted(done=[], routes=[], webhooks={})
    disabled: set[str] | None = None
    for item in items:
        actor = rt.config.actor_target(item.target)
        if actor is not None and rt.actors is not None:
            # Enqueueing on the user's queue is the delivery; their broker retries from there.
            rt.actors.emit(actor.queue_name, actor.actor_name, item.payload)
            out.done.append(finished(item.delivery_id, "succeeded", now))
            continue
        if item.target.startswith(reconcile.ROUTE_PREFIX):
            out.routes.append(item)
            continue
        disabled = disabled_subscriptions(conn) if disabled is None else disabled
        if rt.config.subscription(item.target) is None or item.target in disabled:
            out.done.append(
                finished(item.delivery_id, "skipped", now, "subscription removed from config or disabled")
            )
            continue
        out.webhooks.setdefault(item.target, []).append(item)
    return out


def deliver(rt: Runtime, delivery_id: int) -> str | None:
    """One attempt at one delivery, in the calling thread; None when it is not ours to make.

    The target is a subscription (a signed POST), a dramatiq actor of the user's, or a route's
    target connection (mirroring, see worker/reconcile.py). The worker's path is `dispatch`.
    """
    with rt.engine.begin() as conn:
        items = load(conn, [delivery_id])
        if not items:
            return None
        batch = sort_out(rt, conn, items)
        write_outcomes(conn, batch.done)
    if batch.done:
        return batch.done[0].status
    if batch.routes:
        item = batch.routes[0]
        return _mirror(
            rt,
            item.delivery_id,
            item.meeting_id,
            item.target.removeprefix(reconcile.ROUTE_PREFIX),
            item.attempts,
        )
    [(subscription_id, [item])] = batch.webhooks.items()
    subscription = rt.config.subscription(subscription_id)
    assert subscription is not None
    outcome, _, decision = attempt(rt.http, subscription, item, rt.config.delivery, rt.clock)
    with rt.engine.begin() as conn:
        write_outcomes(conn, [outcome])
    return decision.status


def dispatch(rt: Runtime, delivery_ids: list[int]) -> None:
    """A worker's share of deliveries: settle what needs no request, mirror routes, and hand the
    webhooks to their subscriptions' lanes (worker/lanes.py), which send them and write back."""
    with rt.engine.begin() as conn:
        batch = sort_out(rt, conn, load(conn, delivery_ids))
        write_outcomes(conn, batch.done)
    for item in batch.routes:
        _mirror(
            rt,
            item.delivery_id,
            item.meeting_id,
            item.target.removeprefix(reconcile.ROUTE_PREFIX),
            item.attempts,
        )
    for subscription_id, items in batch.webhooks.items():
        subscription = rt.config.subscription(subscription_id)
        assert subscription is not None
        rt.lanes.submit(subscription, items)


def _mirror(rt: Runtime, delivery_id: int, meeting_id: str, target: str, attempts: int) -> str:
    """A route delivery: converge the target's copy, with the same retry and dead-letter rules."""
    outcome = reconcile.converge(rt, meeting_id, target)
    now = rt.clock.now()
    if outcome.status == "retry":
        decision = decide(
            Attempt(status_code=503, error=outcome.detail, retry_after=outcome.retry_after),
            attempts,
            rt.config.delivery,
            now,
        )
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


def replay(session: Session, now: datetime, *, delivery_id: int | None = None, all_dead: bool = False) -> int:
    """Put dead deliveries back in line, with a fresh attempt budget: one UPDATE, however many.

    Loading every dead letter as an ORM object and flushing each held the write lock (SQLite) for
    as long as a few thousand rows took to load, while the relay waited to send them (issue 6)."""
    if delivery_id is not None:
        which = [col(DeliveryRow.id) == delivery_id, col(DeliveryRow.status).in_(["dead", "skipped"])]
    elif all_dead:
        which = [col(DeliveryRow.status) == "dead"]
    else:
        return 0
    queued: CursorResult[Any] = session.execute(  # type: ignore[assignment]  # an UPDATE's result
        update(DeliveryRow)
        .where(*which)
        .values(status="pending", due_at=now, attempts=0, finished_at=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )
    return int(queued.rowcount or 0)
