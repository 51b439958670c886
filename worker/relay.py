"""The outbox relay: claims due work rows and hands them to the broker under a lease.

Three kinds of work wait in the database: events to publish, deliveries to send and webhook
receipts to ingest. Claiming takes rows that are due (or whose lease ran out, because the broker
lost the message or a worker died) with `FOR UPDATE SKIP LOCKED` on PostgreSQL; on SQLite the
transaction's write lock makes the claim exclusive. A claimed row is leased, so a second relay
skips it, and re-claimed only when the lease runs out before the row is marked done.

Timers get their per-meeting `sequence` here, when they fire (an event due now got its number in
the transaction that wrote it, so numbers follow commit order), and timers are re-checked:
one whose meeting moved, was deleted or came back in a new generation is dropped, not sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Engine, bindparam, func, literal_column, update
from sqlmodel import Session, col, select

from bookingsync.models.tables import DeliveryRow, EventRow, MeetingRow, ReceiptRow
from bookingsync.worker.db import transaction
from bookingsync.worker.freshness import Freshness
from bookingsync.worker.lifecycle import TIMER_TYPES, EventType, timer_is_current
from bookingsync.worker.payloads import event_body, meeting_json
from bookingsync.worker.ingest_plan import state_of_columns
from bookingsync.worker.store import links_of
from bookingsync.worker.sql_lists import among

EVENTS, MEETINGS = EventRow.__table__, MeetingRow.__table__  # type: ignore[attr-defined]
WORK_STATUS = {EventRow: "pending", DeliveryRow: "pending", ReceiptRow: "received"}
# What share of a table's rows SQLite's planner is told are leased (see `_leased`).
LEASED_LIKELIHOOD = 0.0001
# Ids per broker message: big enough that a burst is a handful of messages, small enough that one
# message is a short transaction for the worker that takes it.
MESSAGE_SIZE = 100


@dataclass(frozen=True)
class Claimed:
    events: list[str]
    deliveries: list[int]
    receipts: list[int]
    # The claimed deliveries by target (subscription id, actor key or route:<connection>).
    delivery_targets: dict[int, str] = field(default_factory=dict)


def _leased(model: Any, dialect: str) -> Any:
    """`status = 'leased'`, marked rare for SQLite's planner. Its statistics (ANALYZE) only know how
    many rows share a status on average: with a million pending timers and nothing else, `leased`
    looks as common as `pending`, and counting the leased rows became a scan of the whole table
    (0.8 s a relay tick, bench/timers.py --mode run) instead of a look into the claim index. Leased
    rows are at most the in-flight caps; PostgreSQL's per-value statistics know that already."""
    leased = col(model.status) == "leased"
    rare: Any = literal_column(repr(LEASED_LIKELIHOOD))  # a constant: SQLite takes no parameter here
    return func.likelihood(leased, rare) if dialect == "sqlite" else leased


def _due(
    session: Session,
    model: Any,
    now: datetime,
    limit: int,
    max_in_flight: int | None,
    reclaim_lapsed: bool = True,
    columns: tuple[Any, ...] | None = None,
) -> list[Any]:
    """Up to `limit` rows ready or with a lapsed lease, oldest due first, and never more than
    `max_in_flight` leased at once. Two index range scans on (status, due_at, id) that each stop at
    the limit, rather than one OR that must sort every due row to find the oldest.
    `reclaim_lapsed=False` takes ready rows only (see `claim`). With `columns`, Core rows of those
    columns instead of ORM objects."""
    if limit <= 0:
        return []
    table = model.__table__
    c = table.c
    dialect = session.get_bind().dialect.name
    if max_in_flight is not None:
        leased = session.execute(
            select(func.count()).select_from(table).where(_leased(model, dialect), c.lease_until >= now)
        ).scalar_one()
        limit = min(limit, max(0, max_in_flight - leased))
        if limit == 0:
            return []
    rows: list[Any] = []
    what: Any = select(*columns) if columns is not None else select(model)
    if reclaim_lapsed:
        lapsed = (
            what.where(_leased(model, dialect), col(model.lease_until) < now)
            .order_by(col(model.due_at), col(model.id))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        rows = list(session.execute(lapsed).all() if columns is not None else session.exec(lapsed).all())
    if len(rows) < limit:
        ready = (
            what.where(col(model.status) == WORK_STATUS[model], col(model.due_at) <= now)
            .order_by(col(model.status), col(model.due_at), col(model.id))
            .limit(limit - len(rows))
            .with_for_update(skip_locked=True)
        )
        rows += session.execute(ready).all() if columns is not None else session.exec(ready).all()
        rows.sort(key=lambda row: (row.due_at, row.id))
    return rows


def _lease(rows: list[Any], now: datetime, lease: timedelta) -> None:
    for row in rows:
        row.status = "leased"
        row.lease_until = now + lease
        row.attempts += 1


@dataclass
class _Event:
    """A due event as claimed (the columns the claim reads and writes), changed in place like a row."""

    id: int
    event_id: str
    meeting_id: str
    type: str
    generation: int
    set_for: datetime | None
    occurred_at: datetime
    due_at: datetime
    sequence: int | None
    payload: Any
    status: str
    lease_until: datetime | None
    attempts: int


_EVENT_COLUMNS = tuple(EVENTS.c[f.name] for f in fields(_Event))


def _claim_events(
    session: Session,
    now: datetime,
    lease: timedelta,
    limit: int,
    max_in_flight: int | None,
    reclaim_lapsed: bool,
    freshness: Freshness | None,
) -> list[_Event]:
    """Claim due events in SQLAlchemy Core: read their columns, prepare them, then write every
    row the preparation changed with one executemany (and the meetings' sequence counters with
    another) instead of loading and flushing ORM objects one by one."""
    due = [
        _Event(*row)
        for row in _due(session, EventRow, now, limit, max_in_flight, reclaim_lapsed, columns=_EVENT_COLUMNS)
    ]
    if not due:
        return []
    before = {e.id: (e.status, e.lease_until, e.attempts, e.sequence, e.payload) for e in due}
    events = _prepare_events(session, due, now, freshness)
    _lease(events, now, lease)
    changed = [e for e in due if (e.status, e.lease_until, e.attempts, e.sequence, e.payload) != before[e.id]]
    if changed:
        session.execute(
            update(EVENTS)
            .where(EVENTS.c.id == bindparam("b_id"))
            .values({name: bindparam(f"b_{name}") for name in _EVENT_WRITES}),
            [{"b_id": e.id, **{f"b_{name}": getattr(e, name) for name in _EVENT_WRITES}} for e in changed],
        )
    return events


_EVENT_WRITES = ("status", "lease_until", "attempts", "sequence", "payload")


def _prepare_events(
    session: Session, rows: list[_Event], now: datetime, freshness: Freshness | None = None
) -> list[_Event]:
    """Drop stale timers, hold a `hasStarted` whose meeting was not read lately (worker/freshness.py),
    number the rest per meeting in due order, freeze their bodies; the meetings' next sequence
    numbers are written back here."""
    meeting_ids = sorted({row.meeting_id for row in rows})
    meetings = {
        m.id: m
        for m in session.execute(
            select(MEETINGS)
            .where(among(session, MEETINGS.c.id, meeting_ids))
            .order_by(MEETINGS.c.id)
            .with_for_update()
        )
    }
    next_sequence = {mid: m.next_sequence for mid, m in meetings.items()}
    # The links only of meetings that need them: an event without its meeting's snapshot (its body
    # lists the links), or a `hasStarted` the freshness check reads them for. A burst of events
    # written with their snapshot (the ingest's) loads none.
    links = links_of(
        session,
        sorted(
            {
                row.meeting_id
                for row in rows
                if not (row.payload or {}).get("meeting")
                or (freshness is not None and row.type == EventType.HAS_STARTED)
            }
        ),
    )
    ready = []
    for row in rows:
        meeting = meetings[row.meeting_id]
        if row.payload is None or "data" not in row.payload:
            kind = EventType(row.type)
            if kind in TIMER_TYPES and not timer_is_current(
                state_of_columns(meeting), kind, row.generation, row.set_for
            ):
                row.status = "dropped"
                row.lease_until = None
                continue
            if freshness is not None and freshness.hold(
                session, cast(EventRow, row), links.get(meeting.id, []), now
            ):
                continue  # left leased for a moment; re-checked when that lease runs out
            if row.sequence is None:  # an event due now was numbered when it was committed (issue 13)
                row.sequence = next_sequence[meeting.id]
                next_sequence[meeting.id] += 1
            snapshot = (row.payload or {}).get("meeting") or meeting_json(
                cast(MeetingRow, meeting), links.get(meeting.id, [])
            )
            row.payload = event_body(cast(EventRow, row), snapshot)
        ready.append(row)
    numbered = [
        {"b_id": mid, "b_next": value}
        for mid, value in next_sequence.items()
        if value != meetings[mid].next_sequence
    ]
    if numbered:
        session.execute(
            update(MEETINGS)
            .where(MEETINGS.c.id == bindparam("b_id"))
            .values(next_sequence=bindparam("b_next")),
            numbered,
        )
    return ready


def claim(
    engine: Engine,
    now: datetime,
    *,
    lease_seconds: float,
    limit: int,
    max_in_flight: int | None = None,
    freshness: Freshness | None = None,
    reclaim_lapsed: bool = True,
    event_limit: int | None = None,
) -> Claimed:
    """Claim and lease due work of every kind: at most `limit` rows of each (`event_limit` events,
    when given), and (when given) no more than `max_in_flight` of a kind leased at once, so a
    burst waits here, not in memory.

    `reclaim_lapsed=False` while the broker is backed up: a lease that ran out then most likely
    belongs to a message still waiting in the queue, and sending it again would put a second copy
    beside it (each lease period, another), so such rows wait until the queue has drained."""
    lease = timedelta(seconds=lease_seconds)
    with transaction(engine) as session:
        events = _claim_events(
            session,
            now,
            lease,
            limit if event_limit is None else event_limit,
            max_in_flight,
            reclaim_lapsed,
            freshness,
        )
        deliveries = _due(session, DeliveryRow, now, limit, max_in_flight, reclaim_lapsed)
        _lease(deliveries, now, lease)
        receipts = _due(session, ReceiptRow, now, limit, max_in_flight, reclaim_lapsed)
        _lease(receipts, now, lease)
        session.flush()
        return Claimed(
            events=[e.event_id for e in events],
            deliveries=[d.id for d in deliveries],
            receipts=[r.id for r in receipts],
            delivery_targets={d.id: d.subscription_id for d in deliveries},
        )


def _soonest_due_statement() -> Any:
    after = bindparam("after", type_=EVENTS.c.due_at.type)
    return select(
        *(
            select(func.min(col(model.due_at)))
            .where(col(model.status) == WORK_STATUS[model], col(model.due_at) > after)
            .scalar_subquery()
            for model in (EventRow, DeliveryRow)
        )
    )


_SOONEST_DUE = _soonest_due_statement()  # built once: building it cost as much as running it


def soonest_due(engine: Engine, after: datetime) -> datetime | None:
    """The soonest `due_at` after `after` among pending events and deliveries (one look into each
    table's (status, due_at) index, in one statement); None when there is none. The scheduler
    sleeps until then instead of a whole relay interval (worker/scheduler.py)."""
    with engine.connect() as conn:
        found = conn.execute(_SOONEST_DUE, {"after": after}).one()
    return min((when for when in found if when is not None), default=None)


def lapse_leases(
    engine: Engine, now: datetime, ids: Claimed | None = None, tables: tuple[type, ...] | None = None
) -> int:
    """End the leases of leased rows now (all of them, those of `ids`, or those of `tables`), so the
    next claim hands them out again: for work whose broker message is known lost (the broker went down with a
    process, lost its data, or a send failed). A worker still holding one of them finishes
    harmlessly: every stage acts only on rows still leased, and publishing twice is a no-op."""
    count = 0
    with transaction(engine) as session:
        for model, chosen in (
            (EventRow, None if ids is None else ids.events),
            (DeliveryRow, None if ids is None else ids.deliveries),
            (ReceiptRow, None if ids is None else ids.receipts),
        ):
            if (chosen is not None and not chosen) or (tables is not None and model not in tables):
                continue
            key = col(model.event_id) if model is EventRow else col(model.id)
            query = update(model).where(_leased(model, engine.dialect.name), col(model.lease_until) > now)
            if chosen is not None:
                query = query.where(among(session, key, chosen))
            count += session.execute(query.values(lease_until=now)).rowcount or 0
    return count


@dataclass(frozen=True)
class Senders:
    """Broker sends; each takes a batch of ids (a list), as the actors do."""

    publish: Callable[[list[str]], Any]
    deliver: Callable[[list[int]], Any]
    ingest: Callable[[list[int]], Any]


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def by_target(delivery_ids: list[int], targets: dict[int, str]) -> list[list[int]]:
    """Deliveries grouped by target, so that one message feeds one subscription's lane."""
    groups: dict[str, list[int]] = {}
    for delivery_id in delivery_ids:
        groups.setdefault(targets.get(delivery_id, ""), []).append(delivery_id)
    return list(groups.values())


def relay_once(
    engine: Engine,
    now: datetime,
    senders: Senders,
    *,
    lease_seconds: float,
    limit: int,
    max_in_flight: int | None = None,
    message_size: int = MESSAGE_SIZE,
    freshness: Freshness | None = None,
    reclaim_lapsed: bool = True,
) -> Claimed:
    """Claim up to `limit` due rows of each kind and send them in messages of up to `message_size`
    ids; a lost message is sent again after its rows' lease runs out.

    Events are claimed a message's worth per transaction, each message sent before the next is
    claimed: a claim holds SQLite's write lock while it re-checks, numbers and freezes its events'
    bodies, so a claim of a whole burst kept the publishers and the delivery outcomes waiting for
    it (a second and more on a busy machine, issue 6), and the first message went out only once
    the last event was claimed. Deliveries and receipts, cheap to claim, all go in the first."""
    total = Claimed(events=[], deliveries=[], receipts=[])
    first, taken = True, 0
    while True:
        step = min(limit - taken, message_size)
        claimed = _claim_and_send(
            engine,
            now,
            senders,
            lease_seconds=lease_seconds,
            # deliveries and receipts (cheap to claim) all in the first claim; events a message at a time
            limit=limit if first else 0,
            event_limit=step,
            max_in_flight=max_in_flight,
            message_size=message_size,
            freshness=freshness,
            reclaim_lapsed=reclaim_lapsed,
        )
        first = False
        total.events.extend(claimed.events)
        total.deliveries.extend(claimed.deliveries)
        total.receipts.extend(claimed.receipts)
        total.delivery_targets.update(claimed.delivery_targets)
        taken += step
        if len(claimed.events) < step or taken >= limit:
            return total


def _claim_and_send(
    engine: Engine,
    now: datetime,
    senders: Senders,
    *,
    lease_seconds: float,
    limit: int,
    event_limit: int,
    max_in_flight: int | None,
    message_size: int,
    freshness: Freshness | None,
    reclaim_lapsed: bool,
) -> Claimed:
    claimed = claim(
        engine,
        now,
        lease_seconds=lease_seconds,
        limit=limit,
        event_limit=event_limit,
        max_in_flight=max_in_flight,
        freshness=freshness,
        reclaim_lapsed=reclaim_lapsed,
    )
    try:
        for batch in chunks(claimed.events, message_size):
            senders.publish(batch)
        for group in by_target(claimed.deliveries, claimed.delivery_targets):
            for batch in chunks(group, message_size):
                senders.deliver(batch)
        for batch in chunks(claimed.receipts, message_size):
            senders.ingest(batch)
    except Exception:
        # The broker refused (down, restarting): what was claimed goes back in line now rather
        # than when its lease runs out. Rows already sent may go twice; every stage tolerates that.
        try:
            lapse_leases(engine, now, claimed)
        except Exception:  # noqa: BLE001 - the database is down too: the leases run out instead
            pass
        raise
    return claimed
