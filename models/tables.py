"""The tables: meetings, provider links, the event outbox and the rest of the durable state.

Every piece of work (an event to publish, a delivery to send, a webhook receipt to ingest) is a
row with a status, a time it becomes due and a lease, so that any number of processes can claim
work without doing it twice, and a flushed broker loses nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, Text, UniqueConstraint, event, inspect, text
from sqlmodel import Field, SQLModel

from bookingsync.models.columns import UTCDateTime

# Constraint and index names, on every backend: the names PostgreSQL gives unnamed constraints
# (and SQLAlchemy's `ix_` default for indexes), so that the constraints of revisions 0001-0007,
# created unnamed, already carry these names there and nothing needs renaming. From now on every
# constraint has a known name on SQLite too, which a later migration needs to drop or alter it
# (SQLite's batch mode finds constraints by name). Constraints named explicitly keep their names.
# Set before any table is defined: names are given as constraints attach to their tables.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "%(table_name)s_%(column_0_name)s_key",
    "ck": "%(table_name)s_%(constraint_name)s_check",
    "fk": "%(table_name)s_%(column_0_name)s_fkey",
    "pk": "%(table_name)s_pkey",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
_ID = BigInteger().with_variant(Integer(), "sqlite")


def _time(nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


class MeetingRow(SQLModel, table=True):
    __tablename__ = "meetings"

    id: str = Field(primary_key=True, max_length=40)
    status: str = Field(max_length=20, index=True)
    title: str | None = Field(default=None, sa_column=Column(Text))
    start: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    end: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    timezone: str | None = Field(default=None, max_length=64)
    attendee_email: str | None = Field(default=None, max_length=320, index=True)
    attendee_name: str | None = Field(default=None, sa_column=Column(Text))
    attendee_phone: str | None = Field(default=None, max_length=64)
    hosts: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    conference_url: str | None = Field(default=None, sa_column=Column(Text))
    content_hash: str = Field(max_length=64)
    booked: bool = False  # `booked` has been emitted (once per meeting, ever)
    deleted: bool = False  # `deleted` has been emitted for the current generation
    generation: int = 0  # bumps when a deleted meeting comes back to life
    version: int = 0  # bumps on every stored change
    next_sequence: int = 1  # the `sequence` the next published event of this meeting gets
    # The provider's own stamp of the change the meeting's content last took (issue 16): a read
    # older than this never overwrites it, and with a bidirectional route the newer end wins.
    source_updated_at: datetime | None = _time(nullable=True)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class LinkRow(SQLModel, table=True):
    """(connection, external_id) → meeting: a provider's id is a link, never the identity."""

    __tablename__ = "links"
    __table_args__ = (
        UniqueConstraint("connection", "external_id", name="uq_links_connection_external"),
        Index("ix_links_connection_scope", "connection", "scope"),
    )

    id: int | None = Field(default=None, sa_column=Column(_ID, primary_key=True, autoincrement=True))
    meeting_id: str = Field(foreign_key="meetings.id", index=True, max_length=40)
    connection: str = Field(max_length=100)
    provider: str = Field(max_length=40)
    external_id: str = Field(max_length=255)
    scope: str | None = Field(default=None, max_length=320)
    content_hash: str = Field(max_length=64)
    raw: Any = Field(default=None, sa_column=Column(JSON))
    # The provider's ordering key of the snapshot applied: its own updated_at, or (a webhook record
    # without one) the delivery's receipt time. An older snapshot is counted and ignored (issue 13).
    source_updated_at: datetime | None = _time(nullable=True)
    source_delivered_at: datetime | None = _time(nullable=True)
    stale_count: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    # When this provider has the meeting: what mirroring compares against the canonical times.
    start: datetime | None = _time(nullable=True)
    end: datetime | None = _time(nullable=True)
    missing: bool = False  # gone from a complete read of its scope, or cancelled there by us
    mirrored: bool = False  # created by bookingsync through a route, not seen first at this provider
    # How this link joined its meeting (issue 16): `origin` (it made the meeting), an identity rule
    # (`answer`, `reference`, `open-intent`, `attendee-start`, `double-opt-in`), `route` (our
    # write's answer), `successor` (a move made as a new booking), `hand` (`meetings link`).
    rule: str | None = Field(default=None, max_length=40)
    # The canonical form of what this provider last said (a peer or a mirror): what a later read
    # is compared with, so that only the fields changed there count as a change there.
    observed: Any = Field(default=None, sa_column=Column(JSON))
    first_seen_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    last_seen_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    # The key of the raw record whose reading the link holds (worker/ingest_fingerprint.py): the
    # same record read again is known before it is normalised. Cleared whenever the link's state
    # changes by any other write (`_forget_raw_hash` below; Core writers: worker/ingest_store.py).
    raw_hash: str | None = Field(default=None, max_length=64)


# What a read of the same raw record compares or carries over: a change to any of these by any
# ORM write makes the stored key untrustworthy. The bulk ingest writes links with Core and sets
# `raw_hash` itself; an ORM bulk UPDATE of these columns would bypass this and must clear it too.
_RAW_STATE = (
    "meeting_id",
    "content_hash",
    "scope",
    "source_updated_at",
    "source_delivered_at",
    "missing",
    "mirrored",
    "rule",
)


@event.listens_for(LinkRow, "before_update")
def _forget_raw_hash(mapper: Any, connection: Any, link: LinkRow) -> None:
    state = inspect(link)
    if state.attrs.raw_hash.history.has_changes():
        return
    if any(state.attrs[name].history.has_changes() for name in _RAW_STATE):
        link.raw_hash = None


class EventRow(SQLModel, table=True):
    """The outbox. Timers are events whose `due_at` is in the future."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_claim", "status", "due_at", "id"),
        Index("ix_events_meeting_status", "meeting_id", "status"),
    )

    id: int | None = Field(default=None, sa_column=Column(_ID, primary_key=True, autoincrement=True))
    event_id: str = Field(max_length=40, unique=True)
    meeting_id: str = Field(foreign_key="meetings.id", max_length=40)
    type: str = Field(max_length=40)
    dedupe_key: str = Field(max_length=255, unique=True)
    generation: int = 0
    # For timers: the start/end they were set for, so a stale timer can be told apart.
    set_for: datetime | None = _time(nullable=True)
    occurred_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    due_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    # pending → leased → published; or cancelled (superseded) / dropped (stale when due)
    status: str = Field(default="pending", max_length=20)
    lease_until: datetime | None = _time(nullable=True)
    attempts: int = 0
    sequence: int | None = None
    payload: Any = Field(default=None, sa_column=Column(JSON))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    published_at: datetime | None = _time(nullable=True, index=True)
    # When the event was first seen cancelled (retention stamps it, worker/retention.py): the
    # retention window of a cancelled timer runs from here, not from its due time, which can be
    # months ahead. Only meaningful while `status` is `cancelled`.
    cancelled_at: datetime | None = _time(nullable=True)
    # Where a published event stands in the feed: commit order, unlike `id` (see worker/feed.py).
    feed_position: int | None = Field(
        default=None, sa_column=Column(BigInteger(), nullable=True, unique=True, index=True)
    )


class CursorRow(SQLModel, table=True):
    __tablename__ = "cursors"

    connection: str = Field(primary_key=True, max_length=100)
    value: Any = Field(default=None, sa_column=Column(JSON))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class ReceiptRow(SQLModel, table=True):
    """An inbound webhook delivery, stored before it is acknowledged."""

    __tablename__ = "webhook_receipts"
    __table_args__ = (
        UniqueConstraint("connection", "delivery_id", name="uq_receipts_connection_delivery"),
        Index("ix_receipts_claim", "status", "due_at", "id"),
    )

    id: int | None = Field(default=None, sa_column=Column(_ID, primary_key=True, autoincrement=True))
    connection: str = Field(max_length=100)
    delivery_id: str = Field(max_length=255)
    event_type: str = Field(max_length=100)
    handled: bool = True
    body: str = Field(sa_column=Column(Text, nullable=False))
    # The provider records the delivery carries, as extracted when it was verified.
    records: Any = Field(default=None, sa_column=Column(JSON))
    # received → leased → done | failed; `ignored` for event types we do not handle
    status: str = Field(default="received", max_length=20)
    due_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    lease_until: datetime | None = _time(nullable=True)
    attempts: int = 0
    error: str | None = Field(default=None, sa_column=Column(Text))
    received_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    processed_at: datetime | None = _time(nullable=True)


class DeliveryRow(SQLModel, table=True):
    """One event to one subscription: retried with backoff, dead-lettered when exhausted."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "subscription_id", name="uq_deliveries_event_subscription"),
        Index("ix_deliveries_claim", "status", "due_at", "id"),
        Index("ix_deliveries_subscription_status", "subscription_id", "status"),
    )

    id: int | None = Field(default=None, sa_column=Column(_ID, primary_key=True, autoincrement=True))
    event_id: str = Field(max_length=40, index=True)
    subscription_id: str = Field(max_length=100)
    # pending → leased → succeeded; or dead (exhausted / refused), skipped (subscription disabled)
    status: str = Field(default="pending", max_length=20)
    due_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    lease_until: datetime | None = _time(nullable=True)
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    finished_at: datetime | None = _time(nullable=True)


class SubscriptionStateRow(SQLModel, table=True):
    """What config cannot say: a subscription disabled by its endpoint answering 410."""

    __tablename__ = "subscription_states"

    subscription_id: str = Field(primary_key=True, max_length=100)
    disabled_at: datetime | None = _time(nullable=True)
    disabled_reason: str | None = Field(default=None, sa_column=Column(Text))


class QuarantineRow(SQLModel, table=True):
    """A provider record we could not normalise, kept whole with the reason, replayable."""

    __tablename__ = "quarantine"

    id: int | None = Field(default=None, sa_column=Column(_ID, primary_key=True, autoincrement=True))
    connection: str = Field(max_length=100, index=True)
    external_id: str | None = Field(default=None, max_length=255)
    scope: str | None = Field(default=None, max_length=320)
    source: str = Field(max_length=20)  # poll | webhook
    raw: Any = Field(default=None, sa_column=Column(JSON))
    # Re-reading the same bad record bumps `seen_count` on the open item instead of adding one.
    raw_hash: str = Field(max_length=64, index=True)
    reason: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default="open", max_length=20)  # open | replayed | superseded
    seen_count: int = 1
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    last_seen_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    resolved_at: datetime | None = _time(nullable=True)


class LeaseRow(SQLModel, table=True):
    """Named leases: the scheduler's leadership, one poll per connection at a time."""

    __tablename__ = "leases"

    name: str = Field(primary_key=True, max_length=150)
    holder: str = Field(max_length=150)
    until: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


# --- issue 9 (part A): the consumer API's event feed ---------------------------------------------


class FeedCounterRow(SQLModel, table=True):
    """The last feed position handed out. Publishing locks this one row until it commits, which
    is what makes feed positions follow commit order (worker/feed.py)."""

    __tablename__ = "feed_counter"

    name: str = Field(primary_key=True, max_length=40)
    value: int = Field(default=0, sa_column=Column(BigInteger(), nullable=False))


# --- issue 9 (operations): indexes for retention and scrape-time metrics ----------------------

# Retention removes resolved quarantine items by `resolved_at`; /metrics counts the open ones.
Index(
    "ix_quarantine_status_resolved", QuarantineRow.__table__.c.status, QuarantineRow.__table__.c.resolved_at
)


# -- issue 15: safe writes to providers ----------------------------------------------------------


class IntentRow(SQLModel, table=True):
    """One write to a route target, recorded (and committed) before the provider is called.

    The pure state machine is `worker/intents.py`; this row is its durable form. `reference` is
    planted at the provider where it keeps one, so a lost answer can be looked up and a read of
    the booking recognised as our own echo.
    """

    __tablename__ = "write_intents"
    __table_args__ = (
        Index("ix_write_intents_target", "meeting_id", "connection"),
        Index("ix_write_intents_connection_state", "connection", "state"),
        Index("ix_write_intents_connection_external", "connection", "external_id"),
    )

    id: int | None = Field(default=None, sa_column=Column(_ID, primary_key=True, autoincrement=True))
    reference: str = Field(max_length=64, unique=True)
    meeting_id: str = Field(foreign_key="meetings.id", max_length=40)
    connection: str = Field(max_length=100)
    action: str = Field(max_length=20)  # create | reschedule | cancel
    # pending → done | unknown | failed; halted (the breaker stopped it before any call)
    state: str = Field(default="pending", max_length=20)
    step: str = Field(default="ready", max_length=20)  # while pending: ready | calling | lost
    # The booking acted on (reschedule, cancel) or replaced (a create that moves a meeting).
    subject: str | None = Field(default=None, max_length=255)
    # The booking the answer (or a lookup, or an echo) named, and another id the provider knows it by.
    external_id: str | None = Field(default=None, max_length=255)
    alias: str | None = Field(default=None, max_length=255)
    # What was asked for: how an echo that comes before the answer is recognised, and what a
    # lookup after a lost answer searches for.
    start: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    end: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    attendee_email: str | None = Field(default=None, max_length=320)
    attempts: int = 0
    reason: str | None = Field(default=None, sa_column=Column(Text))
    calling_until: datetime | None = _time(nullable=True)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


# -- issue 16: one meeting across providers -------------------------------------------------------

# Identity rules look candidates up by attendee and start for a whole page at once.
Index("ix_meetings_attendee_start", MeetingRow.__table__.c.attendee_email, MeetingRow.__table__.c.start)


class AuditRow(SQLModel, table=True):
    """What happened to a meeting's identity and mirrors, and who did it: a link made by a rule or
    by hand, a link split off, an ambiguous match, a conflict at a target. Kept with the meeting
    (retention removes them together); `connection`/`external_id` name the record concerned."""

    __tablename__ = "meeting_audit"
    __table_args__ = (
        Index("ix_meeting_audit_meeting", "meeting_id", "id"),
        Index("ix_meeting_audit_record", "connection", "external_id"),
    )

    id: int | None = Field(default=None, sa_column=Column(_ID, primary_key=True, autoincrement=True))
    meeting_id: str = Field(max_length=40)
    action: str = Field(
        max_length=40
    )  # linked | unlinked | ambiguous | sync_conflict | converged | backfilled
    actor: str = Field(max_length=100)  # `identity`, `policy`, `drift`, `backfill`, or `cli:<user>`
    connection: str | None = Field(default=None, max_length=100)
    external_id: str | None = Field(default=None, max_length=255)
    detail: Any = Field(default=None, sa_column=Column(JSON))
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class RouteSyncRow(SQLModel, table=True):
    """How far `bookingsync routes sync` (or the scheduler's backfill) got for one route target:
    the position in (start, id) order of the last meeting handed to it, so a run resumes there."""

    __tablename__ = "route_syncs"

    target: str = Field(primary_key=True, max_length=100)
    sources: str = Field(sa_column=Column(Text, nullable=False))  # the route's sources, sorted, comma-joined
    after_start: datetime | None = _time(nullable=True)
    after_id: str | None = Field(default=None, max_length=40)
    done: int = 0
    started_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    finished_at: datetime | None = _time(nullable=True)


# --- issue 12: polling at volume ---------------------------------------------------------------


class PollStateRow(SQLModel, table=True):
    """What a connection's polls remember across ticks and restarts (worker/poll_state.py).

    The back-off belongs to the connection: `failures` in a row lengthen the wait before the
    next read, `not_before` holds it (a Retry-After included) so a restart honours it. The
    watch columns summarise a watch-list schedule (LeanData) for `bookingsync status`.
    """

    __tablename__ = "poll_states"

    connection: str = Field(primary_key=True, max_length=100)
    failures: int = 0
    not_before: datetime | None = _time(nullable=True)
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    last_error_at: datetime | None = _time(nullable=True)
    last_read_at: datetime | None = _time(nullable=True)  # the last read that finished
    skipped_ticks: int = 0  # ticks that found a read of the connection still running
    deferred_pages: int = 0  # pages rescheduled to when the provider's rate allowed them
    watch_count: int | None = None
    watch_staleness_seconds: float | None = None
    watch_next_due_at: datetime | None = _time(nullable=True)
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


# -- issue 18: work per change does not grow with history ----------------------------------------

# LeanData's watch list reads the attendees of meetings that end after a point in time
# (store.watched_emails) at every poll, and retention finds ended meetings: by `end`, not a scan.
Index("ix_meetings_end", MeetingRow.__table__.c.end)  # type: ignore[attr-defined]  # sqlmodel types __table__ only at runtime
# Retention clears the raw bodies of processed receipts once their window is over; the rows stay
# (their delivery ids dedupe redeliveries) for weeks more. Partial, over the rows that still have
# a body, so each prune reads only what it will clear, not every receipt already cleared. The
# predicate is written the same way in retention's query, as SQLite needs to use the index.
RECEIPT_HAS_BODY = "body <> ''"
# (Migration 0010 also has PostgreSQL's autovacuum visit events, deliveries and webhook_receipts at
# 2 % dead rows: storage parameters, which the metadata here does not describe.)
Index(
    "ix_receipts_body_kept",
    ReceiptRow.__table__.c.due_at,  # type: ignore[attr-defined]
    sqlite_where=text(RECEIPT_HAS_BODY),
    postgresql_where=text(RECEIPT_HAS_BODY),
)
# The status of a connection (worker/connection_status.py: API and status page) reads its newest
# receipt and counts its processed receipts of the last hour: an index range per connection,
# whatever the weeks of receipts retention keeps (migration 0012).
Index(
    "ix_receipts_connection_received",
    ReceiptRow.__table__.c.connection,  # type: ignore[attr-defined]
    ReceiptRow.__table__.c.received_at,  # type: ignore[attr-defined]
)
# Cancelled events, by when they were cancelled (migration 0014): retention stamps the ones not
# stamped yet (`cancelled_at IS NULL`) and removes those cancelled before the window, each an index
# range over cancelled rows only, which retention keeps few. Partial, with the predicate written
# the same way in retention's queries, as SQLite needs to use the index.
EVENT_CANCELLED = "status = 'cancelled'"
Index(
    "ix_events_cancelled",
    EventRow.__table__.c.cancelled_at,  # type: ignore[attr-defined]
    sqlite_where=text(EVENT_CANCELLED),
    postgresql_where=text(EVENT_CANCELLED),
)
