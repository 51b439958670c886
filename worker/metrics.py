"""Prometheus metrics: what this process did (counters, histograms) and what the store holds now.

Two kinds, both served at `/metrics` by every role (web, worker, scheduler, run):

* Process metrics, counted where the work happens, through the small functions below (one call
  per site): webhook outcomes, delivery attempts and their latency per subscription, polls per
  connection (runs, errors, duration), timer lateness, events published, relay claims,
  leadership, retention, older snapshots ignored (issue 13), and dramatiq's messages per actor
  (`Messages`, a middleware). The freshness check before `hasStarted` counts its waits,
  time-outs and re-reads in worker/freshness.py.
* Store metrics, computed at scrape time by `StoreCollector` from indexed queries that count
  live rows only (pending, leased, dead, open: never the finished history), so a value is never
  left stale by a process that stopped updating it: the backlog by table and state, the relay
  lag (age of the oldest due row nobody claimed), each connection's cursor age, disabled
  subscriptions, the leader lease, and the writes to route targets not finished yet (pending by
  step; unknown outcomes and halted mirrors wait for a person).

dramatiq ships a Prometheus middleware, but it switches prometheus_client into multiprocess mode
for the whole process and serves from a process it forks, which fits dramatiq's own CLI and not a
worker embedded in `bookingsync run`. `Messages` exports the same series names
(`dramatiq_messages_total`, …) into our registry instead, so dashboards made for it still work.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import dramatiq
from dramatiq.middleware import Middleware
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import Engine, and_, case, func, select
from sqlalchemy.sql import Select

from bookingsync.adapters import skew
from bookingsync.models.tables import (
    CursorRow,
    DeliveryRow,
    EventRow,
    IntentRow,
    LeaseRow,
    QuarantineRow,
    ReceiptRow,
    SubscriptionStateRow,
)
from bookingsync.worker.clock import Clock

if TYPE_CHECKING:
    from bookingsync.worker.poll import PollResult

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # CPU, resident memory, open descriptors of this process

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
LATENESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900)

WEBHOOKS = Counter(
    "bookingsync_webhooks_total",
    "Inbound provider webhooks by connection and outcome",
    ["connection", "outcome"],
    registry=REGISTRY,
)
DELIVERIES = Counter(
    "bookingsync_deliveries_total",
    "Delivery attempts by target and outcome (succeeded, pending = will retry, dead, disabled, skipped)",
    ["subscription", "outcome"],
    registry=REGISTRY,
)
DELIVERY_SECONDS = Histogram(
    "bookingsync_delivery_seconds",
    "Duration of one delivery attempt, by target",
    ["subscription"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
POLLS = Counter(
    "bookingsync_polls_total",
    "Polls by connection and outcome (ok, error, busy = another process was polling it)",
    ["connection", "outcome"],
    registry=REGISTRY,
)
POLL_SECONDS = Histogram(
    "bookingsync_poll_seconds",
    "Duration of one poll of a connection",
    ["connection"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
POLL_RECORDS = Counter(
    "bookingsync_poll_records_total", "Provider records read by polls", ["connection"], registry=REGISTRY
)
TIMER_LATENESS = Histogram(
    "bookingsync_timer_lateness_seconds",
    "How long after its due time a timer event (hasStarted, hasEnded) was published",
    ["type"],
    buckets=LATENESS_BUCKETS,
    registry=REGISTRY,
)
LATE_SKIPPED = Counter(
    "bookingsync_late_timers_skipped_total",
    "hasStarted/hasEnded not sent because the meeting "
    "was first seen longer after its end than events.late_window_seconds",
    ["type"],
    registry=REGISTRY,
)
PUBLISHED = Counter(
    "bookingsync_events_published_total", "Events published, by type", ["type"], registry=REGISTRY
)
RELAYED = Counter(
    "bookingsync_relay_claimed_total",
    "Rows the relay claimed and handed to the broker, by table",
    ["table"],
    registry=REGISTRY,
)
LEADING = Gauge(
    "bookingsync_scheduler_leading", "1 while this process leads the schedulers, else 0", registry=REGISTRY
)
RETENTION = Counter(
    "bookingsync_retention_removed_total",
    "Rows removed (or bodies cleared) by retention, by policy",
    ["policy"],
    registry=REGISTRY,
)
IDENTITY = Counter(
    "bookingsync_identity_matches_total",
    "Records of a connection not yet linked that an identity "
    "rule joined to an existing meeting, by connection and rule (`ambiguous`: two or more "
    "meetings matched, nothing linked)",
    ["connection", "rule"],
    registry=REGISTRY,
)
STALE_SNAPSHOTS = Counter(
    "bookingsync_stale_snapshots_total",
    "Provider records ignored because they were older than the snapshot already applied to their "
    "link (its ordering key: the provider's updated_at, else the webhook's receipt time), by "
    "connection and source (poll, webhook): a late webhook or a poll page read before a change",
    ["connection", "source"],
    registry=REGISTRY,
)
SYNC_CONFLICTS = Counter(
    "bookingsync_sync_conflicts_total",
    "Changes read at a route target that the conflict "
    "policy did not take (reported as meeting.sync_conflict and converged back), by connection",
    ["connection"],
    registry=REGISTRY,
)
DRIFT = Counter(
    "bookingsync_drift_checks_total",
    "Mirrors re-read by the drift sweep, by target and outcome (in_step, repaired, unreadable, error)",
    ["connection", "outcome"],
    registry=REGISTRY,
)
MESSAGES = Counter(
    "dramatiq_messages_total", "Messages processed", ["queue_name", "actor_name"], registry=REGISTRY
)
MESSAGE_ERRORS = Counter(
    "dramatiq_message_errors_total",
    "Messages whose actor raised",
    ["queue_name", "actor_name"],
    registry=REGISTRY,
)
IN_PROGRESS = Gauge(
    "dramatiq_messages_inprogress",
    "Messages being processed now",
    ["queue_name", "actor_name"],
    registry=REGISTRY,
)
MESSAGE_MS = Histogram(
    "dramatiq_message_duration_milliseconds",
    "Time spent processing a message",
    ["queue_name", "actor_name"],
    buckets=(5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000),
    registry=REGISTRY,
)


# --- what the work paths call ---------------------------------------------------------------


def delivered(subscription: str, outcome: str, seconds: float) -> None:
    DELIVERIES.labels(subscription, outcome).inc()
    DELIVERY_SECONDS.labels(subscription).observe(max(0.0, seconds))


def published(event_type: str, due_at: datetime, now: datetime, *, timer: bool) -> None:
    PUBLISHED.labels(event_type).inc()
    if timer:
        TIMER_LATENESS.labels(event_type).observe(max(0.0, (now - due_at).total_seconds()))


def late_timers_skipped(types: Iterable[Any]) -> None:
    for kind in types:
        LATE_SKIPPED.labels(str(kind)).inc()


def stale_snapshots(connection: str, source: str, count: int) -> None:
    """Called once the ingest that ignored them committed, so a page rolled back is not counted."""
    if count:
        STALE_SNAPSHOTS.labels(connection, source).inc(count)


def relayed(events: int, deliveries: int, receipts: int) -> None:
    for table, count in (("events", events), ("deliveries", deliveries), ("receipts", receipts)):
        if count:
            RELAYED.labels(table).inc(count)


def leading(held: bool) -> None:
    LEADING.set(1 if held else 0)


F = TypeVar("F", bound=Callable[..., "PollResult"])


def timed_poll(fn: F) -> F:
    """Decorates `poll(rt, connection_id) -> PollResult`: counts and times each poll."""

    @functools.wraps(fn)
    def wrapper(rt: Any, connection_id: str, *args: Any, **kwargs: Any) -> PollResult:
        started = time.perf_counter()
        result = fn(rt, connection_id, *args, **kwargs)
        if result.ran:
            POLL_SECONDS.labels(connection_id).observe(time.perf_counter() - started)
            POLL_RECORDS.labels(connection_id).inc(result.records)
            POLLS.labels(connection_id, "error" if result.error else "ok").inc()
        elif result.error is None:
            POLLS.labels(connection_id, getattr(result, "skipped", None) or "busy").inc()
        return result

    return wrapper  # type: ignore[return-value]


class Messages(Middleware):
    """dramatiq messages per actor: processed, failed, in progress, duration."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.Message) -> None:
        IN_PROGRESS.labels(message.queue_name, message.actor_name).inc()
        self._started[message.message_id] = time.perf_counter()

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.Message,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        labels = (message.queue_name, message.actor_name)
        started = self._started.pop(message.message_id, None)
        if started is None:
            return
        IN_PROGRESS.labels(*labels).dec()
        MESSAGE_MS.labels(*labels).observe((time.perf_counter() - started) * 1000)
        MESSAGES.labels(*labels).inc()
        if exception is not None:
            MESSAGE_ERRORS.labels(*labels).inc()

    after_skip_message = after_process_message


# --- what the store holds now ---------------------------------------------------------------

# The states a row is live in (work to do, or a dead letter waiting for a person): the only ones
# counted, so a scrape costs what is live, not what is history.
LIVE = {
    "events": (EventRow, ("pending", "leased")),
    "deliveries": (DeliveryRow, ("pending", "leased", "dead")),
    "receipts": (ReceiptRow, ("received", "leased", "failed")),
}
WAITING = {"events": "pending", "deliveries": "pending", "receipts": "received"}
# Unfinished writes to route targets (worker/intents.py), always all present so a value drops to 0.
MIRROR_WRITE_STATES = ("pending_ready", "pending_calling", "pending_lost", "unknown", "halted")


def backlog_queries(now: datetime) -> dict[str, Select]:
    """Per table: (status, due now?, count) over live rows, and the oldest due unclaimed row."""
    out: dict[str, Select] = {}
    for table, (model, states) in LIVE.items():
        due = case((model.due_at <= now, 1), else_=0)
        out[table] = (
            select(model.status, due, func.count())
            .where(model.status.in_(states))
            .group_by(model.status, due)
        )
        out[f"{table}:oldest"] = select(func.min(model.due_at)).where(
            and_(model.status == WAITING[table], model.due_at <= now)
        )
    out["quarantine"] = select(func.count()).select_from(QuarantineRow).where(QuarantineRow.status == "open")
    return out


def _state(table: str, status: str, due: bool) -> str:
    if status == WAITING[table]:
        return "due" if due else ("scheduled" if table == "events" else "waiting")
    return status


class SkewCollector:
    """Each connection's measured provider clock skew (adapters/skew.py), read at scrape time."""

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "bookingsync_provider_clock_skew_seconds",
            "The provider's clock minus ours, "
            "estimated from its answers' Date headers (positive: it runs ahead)",
            labels=["connection"],
        )
        for connection, offset in sorted(skew.estimates().items()):
            family.add_metric([connection], offset.total_seconds())
        yield family


REGISTRY.register(SkewCollector())


class StoreCollector:
    """Collected at scrape time: the store as it is now (see the module docstring)."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self.clock.now()
        up = GaugeMetricFamily("bookingsync_database_up", "1 when the scrape could read the database")
        try:
            families = self._read(now)
        except Exception:  # noqa: BLE001 - a scrape must answer even when the database does not
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self, now: datetime) -> list[Metric]:
        backlog = GaugeMetricFamily(
            "bookingsync_backlog",
            "Live rows by table and state (due: waiting to be "
            "claimed; scheduled: timers not due yet; waiting: retry not due yet; leased: "
            "handed to a worker; dead: dead letters; failed; open)",
            labels=["table", "state"],
        )
        lag = GaugeMetricFamily(
            "bookingsync_relay_lag_seconds",
            "Age of the oldest due row not claimed yet, by table",
            labels=["table"],
        )
        cursors = GaugeMetricFamily(
            "bookingsync_cursor_age_seconds",
            "Time since a poll last saved the connection's cursor",
            labels=["connection"],
        )
        disabled = GaugeMetricFamily(
            "bookingsync_subscription_disabled",
            "1 for a subscription its endpoint disabled with 410 Gone",
            labels=["subscription"],
        )
        leader = GaugeMetricFamily(
            "bookingsync_leader_lease_seconds",
            "Seconds left on the scheduler leader lease, by holder (negative: expired)",
            labels=["holder"],
        )
        writes = GaugeMetricFamily(
            "bookingsync_mirror_writes",
            "Writes to route targets not finished, by state "
            "(pending by step: ready, calling, lost); unknown and halted wait for a person",
            labels=["state"],
        )
        queries = backlog_queries(now)
        with self.engine.connect() as conn:
            for table, (_, states) in LIVE.items():
                counts = {(status, False): 0 for status in states} | {(WAITING[table], True): 0}
                for status, due, count in conn.execute(queries[table]):
                    counts[(status, bool(due))] = counts.get((status, bool(due)), 0) + count
                merged: dict[str, int] = {}
                for (status, due), count in counts.items():
                    key = _state(table, status, due)
                    merged[key] = merged.get(key, 0) + count
                for state, count in sorted(merged.items()):
                    backlog.add_metric([table, state], count)
                oldest = conn.execute(queries[f"{table}:oldest"]).scalar()
                lag.add_metric([table], max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
            backlog.add_metric(["quarantine", "open"], conn.execute(queries["quarantine"]).scalar() or 0)
            for connection, updated in conn.execute(select(CursorRow.connection, CursorRow.updated_at)):
                cursors.add_metric([connection], max(0.0, (now - updated).total_seconds()))
            for (subscription,) in conn.execute(
                select(SubscriptionStateRow.subscription_id).where(
                    SubscriptionStateRow.disabled_at.is_not(None)
                )
            ):
                disabled.add_metric([subscription], 1)
            for holder, until in conn.execute(
                select(LeaseRow.holder, LeaseRow.until).where(LeaseRow.name == "scheduler-leader")
            ):
                leader.add_metric([holder], (until - now).total_seconds())
            open_writes = dict.fromkeys(MIRROR_WRITE_STATES, 0)
            for state, step, count in conn.execute(
                select(IntentRow.state, IntentRow.step, func.count())
                .where(IntentRow.state.in_(("pending", "unknown", "halted")))
                .group_by(IntentRow.state, IntentRow.step)
            ):
                key = f"pending_{step}" if state == "pending" else state
                open_writes[key] = open_writes.get(key, 0) + count
            for state, count in open_writes.items():
                writes.add_metric([state], count)
        return [backlog, lag, cursors, disabled, leader, writes]


def exposition(engine: Engine, clock: Clock) -> bytes:
    """The text a `/metrics` scrape answers: this process's metrics, then the store's."""
    return generate_latest(REGISTRY) + generate_latest(StoreCollector(engine, clock))
