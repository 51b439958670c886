"""Retention: finished rows go after their window, so the database levels off instead of growing.

`POLICIES` is the whole rule book, one entry per kind of row, each with the `[retention]` key
that holds its window in days. What a policy never removes is part of its query:

| policy           | removes after its window                                   | never removes |
|------------------|------------------------------------------------------------|---------------|
| receipt_bodies   | the raw body (and extracted records) of processed receipts | a receipt still to ingest, or failed |
| receipts         | processed and ignored webhook receipts (their delivery ids dedupe provider redeliveries until then) | the same |
| events           | published events (counted from their publishing) and dropped ones (from their due time) with their finished deliveries (succeeded, skipped) | pending or leased events (timers included); an event with a delivery pending, leased or dead (a dead letter waits for replay) |
| cancelled_events | cancelled events (superseded timers), counted from their cancellation | the same |
| meetings         | meetings ended before the window, with their links, events, deliveries and write intents | a meeting with a pending or leased event, an unfinished or dead delivery, or a write to a route target not finished (pending, unknown, halted) |
| quarantine       | replayed and superseded quarantine items                   | open items |

Windows are measured on indexed columns (`published_at`, `due_at`, `cancelled_at`, `start`,
`resolved_at`), so a prune costs what it removes plus an index range, not a scan of everything kept.

A cancelled event's window runs from its cancellation, not from its due time: a timer is set up
to its meeting's start, weeks ahead, and under rescheduling the cancelled ones outnumbered all the
rest while they waited for a due time plus the window (issue 18). The writers that cancel timers
(the bulk ingest, the ORM store) stamp `cancelled_at` as they cancel, and clear it when a timer is
set again; each prune first stamps any cancelled row still without one (rows from before
migration 0014's backfill ran, or a writer that does not stamp) with its own time
(`_stamp_cancelled`), so the window starts at most one `interval_seconds` after the cancellation,
whichever code cancelled. A cancelled timer is in no feed and has no delivery, and setting one
again after it is gone inserts it anew, as reviving it would. Deletes go in batches of
`retention.batch_size`, one transaction each, so locks stay short and PostgreSQL's autovacuum
keeps up. On SQLite the freed pages are given back to the file system (incremental vacuum): the
file stops growing at steady state. A database file made before auto_vacuum was switched on needs
one full VACUUM to be converted: `bookingsync db upgrade` (and `migrate_on_start`) does it for a
file under 256 MiB (worker/db.py), `bookingsync prune --vacuum` for any.

A new kind of row gets its own `Policy` here and a `<name>_days` key in `RetentionConfig`; a rule
that keeps meetings alive for it goes in `meeting_is_needed`. Write intents (worker/intents.py)
have no policy of their own: they say which bookings of ours are live at a target, so they live
as long as their meeting and go with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from datetime import datetime, timedelta

from sqlalchemy import Engine, Row, bindparam, delete, exists, select, text, update
from sqlalchemy.sql import ColumnElement, Executable
from sqlmodel import Session, col

from bookingsync.models.columns import UTCDateTime
from bookingsync.models.tables import (
    EVENT_CANCELLED,
    RECEIPT_HAS_BODY,
    AuditRow,
    DeliveryRow,
    EventRow,
    IntentRow,
    LinkRow,
    MeetingRow,
    QuarantineRow,
    ReceiptRow,
)
from bookingsync.worker import metrics
from bookingsync.worker.config import Config
from bookingsync.worker.db import SQLITE_INCREMENTAL, transaction
from bookingsync.worker.sql_lists import among

log = logging.getLogger(__name__)

PROCESSED_RECEIPTS = ("done", "ignored")
FINISHED_DELIVERIES = ("succeeded", "skipped")
LIVE_EVENTS = ("pending", "leased")
UNFINISHED_DELIVERIES = ("pending", "leased", "dead")  # dead letters wait for a person's replay
UNFINISHED_WRITES = ("pending", "unknown", "halted")  # a write to a route target still to settle
RESOLVED_QUARANTINE = ("replayed", "superseded")
# Safety stop for one run of one policy; the next run goes on where this one stopped.
MAX_BATCHES_PER_RUN = 1000


def _ids(session: Session, query: Executable) -> list:
    return list(session.execute(query).scalars())


def _receipt_bodies(session: Session, cutoff: datetime, limit: int) -> int:
    # Through the partial index over receipts that still hold a body (models/tables.py), so a prune
    # never walks the weeks of receipts cleared before. SQLite needs the predicate written as the
    # index has it, and without statistics would still take the claim index: INDEXED BY says which.
    hint = " INDEXED BY ix_receipts_body_kept" if session.get_bind().dialect.name == "sqlite" else ""
    query = text(
        f"SELECT id FROM webhook_receipts{hint} WHERE {RECEIPT_HAS_BODY} AND due_at < :cutoff "
        f"AND status IN ({', '.join(repr(s) for s in PROCESSED_RECEIPTS)}) ORDER BY due_at LIMIT :limit"
    ).bindparams(bindparam("cutoff", type_=UTCDateTime()), bindparam("limit"))
    ids = list(session.execute(query, {"cutoff": cutoff, "limit": limit}).scalars())
    if ids:
        session.execute(
            update(ReceiptRow).where(among(session, col(ReceiptRow.id), ids)).values(body="", records=None)
        )
    return len(ids)


def _receipts(session: Session, cutoff: datetime, limit: int) -> int:
    ids = _ids(
        session,
        select(ReceiptRow.id)
        .where(col(ReceiptRow.status).in_(PROCESSED_RECEIPTS), col(ReceiptRow.due_at) < cutoff)
        .order_by(col(ReceiptRow.due_at))
        .limit(limit),
    )
    if ids:
        session.execute(delete(ReceiptRow).where(among(session, col(ReceiptRow.id), ids)))
    return len(ids)


def _delivery_holds(event_id: ColumnElement) -> ColumnElement:
    """An unfinished or dead delivery of the event exists."""
    return exists().where(
        col(DeliveryRow.event_id) == event_id, col(DeliveryRow.status).in_(UNFINISHED_DELIVERIES)
    )


def _finished_events(session: Session, limit: int, order: Any, *where: Any) -> list[Row]:
    """Up to `limit` events matching `where` with no delivery holding them, oldest `order` first."""
    query = (
        select(EventRow.id, EventRow.event_id)
        .where(*where, ~_delivery_holds(col(EventRow.event_id)))
        .order_by(order)
        .limit(limit)
    )
    return list(session.execute(query).all())


def _events(session: Session, cutoff: datetime, limit: int) -> int:
    # A published event is measured from its publishing, the time it entered the feed: one due
    # long ago but published late (a backlog, a held timer) still gets its whole window there.
    published_at, due_at, status = col(EventRow.published_at), col(EventRow.due_at), col(EventRow.status)
    rows = _finished_events(session, limit, published_at, published_at < cutoff, status == "published")
    rows += _finished_events(session, limit - len(rows), due_at, status == "dropped", due_at < cutoff)
    _remove_events(session, rows)
    return len(rows)


def _remove_events(session: Session, rows: Sequence[Row]) -> None:
    """Delete events (`id`, `event_id` rows) with their finished deliveries."""
    if rows:
        session.execute(
            delete(DeliveryRow).where(
                among(session, col(DeliveryRow.event_id), [r.event_id for r in rows]),
                col(DeliveryRow.status).in_(FINISHED_DELIVERIES),
            )
        )
        session.execute(delete(EventRow).where(among(session, col(EventRow.id), [r.id for r in rows])))


# Both read through the partial index over cancelled rows (models/tables.py), its predicate
# written as it has it; `{hint}` names the index for SQLite, which has no statistics to choose by.
STAMP_SQL = f"SELECT id FROM events{{hint}} WHERE {EVENT_CANCELLED} AND cancelled_at IS NULL LIMIT :limit"
CANCELLED_SQL = (
    f"SELECT id, event_id FROM events{{hint}} WHERE {EVENT_CANCELLED} AND cancelled_at < :cutoff "
    "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.event_id "
    f"AND d.status IN ({', '.join(repr(s) for s in UNFINISHED_DELIVERIES)})) "
    "ORDER BY cancelled_at LIMIT :limit"
)


def _cancelled_hint(session: Session) -> str:
    return " INDEXED BY ix_events_cancelled" if session.get_bind().dialect.name == "sqlite" else ""


def _stamp_cancelled(session: Session, now: datetime, limit: int) -> int:
    """Give up to `limit` cancelled events without a `cancelled_at` this prune's time: rows stamped."""
    query = text(STAMP_SQL.format(hint=_cancelled_hint(session))).bindparams(bindparam("limit"))
    ids = list(session.execute(query, {"limit": limit}).scalars())
    if ids:
        session.execute(
            update(EventRow).where(among(session, col(EventRow.id), ids)).values(cancelled_at=now)
        )
    return len(ids)


def _cancelled_events(session: Session, cutoff: datetime, limit: int) -> int:
    query = text(CANCELLED_SQL.format(hint=_cancelled_hint(session))).bindparams(
        bindparam("cutoff", type_=UTCDateTime()), bindparam("limit")
    )
    rows = list(session.execute(query, {"cutoff": cutoff, "limit": limit}).all())
    _remove_events(session, rows)
    return len(rows)


def meeting_is_needed(meeting_id: ColumnElement) -> ColumnElement:
    """Work of the meeting still to do: a live event, a delivery not finished (or dead), or a write
    to a route target not settled (its booking may be live, or a person must look)."""
    live_event = exists().where(col(EventRow.meeting_id) == meeting_id, col(EventRow.status).in_(LIVE_EVENTS))
    open_delivery = (
        select(DeliveryRow.id)
        .join(EventRow, col(EventRow.event_id) == col(DeliveryRow.event_id))
        .where(col(EventRow.meeting_id) == meeting_id, col(DeliveryRow.status).in_(UNFINISHED_DELIVERIES))
        .exists()
    )
    open_write = exists().where(
        col(IntentRow.meeting_id) == meeting_id, col(IntentRow.state).in_(UNFINISHED_WRITES)
    )
    return live_event | open_delivery | open_write


def _meetings(session: Session, cutoff: datetime, limit: int) -> int:
    # `start` is indexed and never after `end`: the range narrows on it, `end` decides.
    ids = _ids(
        session,
        select(MeetingRow.id)
        .where(
            col(MeetingRow.start) < cutoff,
            col(MeetingRow.end) < cutoff,
            ~meeting_is_needed(col(MeetingRow.id)),
        )
        .order_by(col(MeetingRow.start))
        .limit(limit)
        .with_for_update(skip_locked=True),
    )
    if ids:
        event_ids = select(EventRow.event_id).where(among(session, col(EventRow.meeting_id), ids))
        session.execute(delete(DeliveryRow).where(col(DeliveryRow.event_id).in_(event_ids)))
        session.execute(delete(EventRow).where(among(session, col(EventRow.meeting_id), ids)))
        session.execute(delete(LinkRow).where(among(session, col(LinkRow.meeting_id), ids)))
        session.execute(delete(IntentRow).where(among(session, col(IntentRow.meeting_id), ids)))
        session.execute(delete(AuditRow).where(among(session, col(AuditRow.meeting_id), ids)))
        session.execute(delete(MeetingRow).where(among(session, col(MeetingRow.id), ids)))
    return len(ids)


def _quarantine(session: Session, cutoff: datetime, limit: int) -> int:
    ids = _ids(
        session,
        select(QuarantineRow.id)
        .where(col(QuarantineRow.status).in_(RESOLVED_QUARANTINE), col(QuarantineRow.resolved_at) < cutoff)
        .order_by(col(QuarantineRow.id))
        .limit(limit),
    )
    if ids:
        session.execute(delete(QuarantineRow).where(among(session, col(QuarantineRow.id), ids)))
    return len(ids)


@dataclass(frozen=True)
class Policy:
    name: str
    window: str  # the RetentionConfig key holding its window in days
    removes: str
    batch: Callable[[Session, datetime, int], int]  # one batch in the caller's transaction: rows removed


POLICIES: tuple[Policy, ...] = (
    Policy(
        "receipt_bodies", "receipt_bodies_days", "raw bodies of processed webhook receipts", _receipt_bodies
    ),
    Policy("receipts", "receipts_days", "processed and ignored webhook receipts", _receipts),
    Policy(
        "events",
        "events_days",
        "published and dropped events with their finished deliveries",
        _events,
    ),
    Policy(
        "cancelled_events",
        "cancelled_days",
        "cancelled events (superseded timers), counted from their cancellation",
        _cancelled_events,
    ),
    Policy(
        "meetings",
        "meetings_days",
        "meetings ended before the window, with their links and events",
        _meetings,
    ),
    Policy("quarantine", "quarantine_days", "replayed and superseded quarantine items", _quarantine),
)


@dataclass
class Pruned:
    removed: dict[str, int] = field(default_factory=dict)
    freed_pages: int = 0  # SQLite pages given back to the file system
    vacuum_note: str | None = None


def cutoff(cfg: Config, policy: Policy, now: datetime) -> datetime:
    window = timedelta(days=getattr(cfg.retention, policy.window))
    if policy.name in ("events", "cancelled_events"):
        # A timer is re-set only within the grace window; its old row must outlive that.
        window = max(window, timedelta(seconds=cfg.events.grace_seconds))
    return now - window


def prune(engine: Engine, cfg: Config, now: datetime, *, vacuum: bool = True) -> Pruned:
    """Run every policy to the end (in batches), then give SQLite's free pages back."""
    result = Pruned()
    limit = cfg.retention.batch_size
    for _ in range(MAX_BATCHES_PER_RUN):
        with transaction(engine) as session:
            if _stamp_cancelled(session, now, limit) < limit:
                break
    for policy in POLICIES:
        when, total = cutoff(cfg, policy, now), 0
        for _ in range(MAX_BATCHES_PER_RUN):
            with transaction(engine) as session:
                removed = policy.batch(session, when, limit)
            total += removed
            if removed < limit:
                break
        result.removed[policy.name] = total
        if total:
            metrics.RETENTION.labels(policy.name).inc(total)
            log.info("retention %s: removed %d (older than %s)", policy.name, total, when.isoformat())
    if vacuum and engine.dialect.name == "sqlite":
        result.freed_pages, result.vacuum_note = sqlite_vacuum(engine)
    return result


def sqlite_vacuum(engine: Engine, *, convert: bool = False) -> tuple[int, str | None]:
    """Free pages given back (incremental vacuum); `convert` turns auto_vacuum on with one VACUUM."""
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        mode = raw.execute("PRAGMA auto_vacuum").fetchone()[0]
        if mode != SQLITE_INCREMENTAL and convert:
            # A full rewrite of the file, once; needs room for a copy of it.
            raw.executescript("PRAGMA auto_vacuum=INCREMENTAL; VACUUM;")
            return 0, "converted the file to incremental auto_vacuum (one full VACUUM)"
        if mode != SQLITE_INCREMENTAL:
            return 0, (
                "this SQLite file predates incremental auto_vacuum, so freed space stays inside it; run "
                "`bookingsync prune --vacuum` once (rewrites the file) to convert it"
            )
        before = raw.execute("PRAGMA freelist_count").fetchone()[0]
        # executescript steps the pragma to the end; a plain execute frees one page per call.
        raw.executescript("BEGIN IMMEDIATE; PRAGMA incremental_vacuum; COMMIT;")
        after = raw.execute("PRAGMA freelist_count").fetchone()[0]
        return before - after, None
