"""How each configured connection is doing, read from the store: for the API and the status page.

Everything a connection's state is made of is read in `connection_states`, one function, so that
new sources of state (per-connection poll records, say) are added in one place.

* `polled` says whether the connection is read by polling at all (RocketLead, write-only, is not).
* `last_poll_at` is when a read last saved the connection's cursor (a page was stored);
  `lag_seconds` is how long ago that was, and `next_poll_due_at` when the next tick is due.
* `polling_now` names the process holding the connection's poll lease, while it holds it.
* `last_webhook_at` and `receipts` (by status) cover webhook deliveries; `last_error` is the error
  of the newest receipt that failed to ingest.

What it reads does not grow with history (retention keeps processed receipts for weeks): the
receipts still to ingest or failed are counted whatever their age, through the claim index (status
first), as there are only as many as wait or need a look; processed ones (done, ignored) only over
the last `RECEIPTS_WINDOW`, an index range on (connection, received_at), and the newest receipt is
one probe of that index per connection.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, text
from sqlmodel import Session, col, select

from bookingsync.adapters.base import Capability
from bookingsync.models.columns import UTCDateTime
from bookingsync.models.tables import CursorRow, LeaseRow, QuarantineRow, ReceiptRow
from bookingsync.worker.config import Config
from bookingsync.worker.runtime import Runtime

READS = frozenset({Capability.LIST_CHANGES, Capability.LOOKUP_BY_EMAIL})  # what the scheduler polls
# Receipts waiting to be ingested or failed: counted whatever their age.
OPEN_RECEIPTS = ("received", "leased", "failed")
# Processed receipts (done, ignored) are counted over this window only.
RECEIPTS_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class ConnectionStatus:
    id: str
    provider: str
    enabled: bool
    poll_interval_seconds: float
    polled: bool = True
    cursor: Any = None
    last_poll_at: datetime | None = None
    lag_seconds: float | None = None
    next_poll_due_at: datetime | None = None
    polling_now: str | None = None
    last_webhook_at: datetime | None = None
    receipts: dict[str, int] = field(default_factory=dict)
    open_quarantine: int = 0
    last_error: str | None = None


def polled_connections(rt: Runtime) -> frozenset[str]:
    """The connections the scheduler polls: their adapters can list changes or look up by email."""
    return frozenset(c.id for c in rt.config.connections if rt.adapter(c.id).capabilities & READS)


def receipt_counts(session: Session, ids: list[str], now: datetime) -> dict[str, dict[str, int]]:
    """Per connection, by status: the open receipts (any age) and those processed in the window."""
    receipts: dict[str, dict[str, int]] = defaultdict(dict)
    open_ = (
        select(ReceiptRow.connection, ReceiptRow.status, func.count())
        .where(col(ReceiptRow.status).in_(OPEN_RECEIPTS), col(ReceiptRow.connection).in_(ids))
        .group_by(col(ReceiptRow.connection), col(ReceiptRow.status))
    )
    # By (connection, received_at): SQLite's planner, seeing one connection in every row, would
    # rather walk the claim index in status order (every receipt) to save a sort; INDEXED BY says
    # which index, as retention does for receipt bodies.
    hint = (
        " INDEXED BY ix_receipts_connection_received" if session.get_bind().dialect.name == "sqlite" else ""
    )
    recent = text(
        f"SELECT connection, status, count(*) FROM webhook_receipts{hint} "
        "WHERE connection IN :ids AND received_at >= :since GROUP BY connection, status"
    ).bindparams(bindparam("ids", expanding=True), bindparam("since", type_=UTCDateTime()))
    for connection, status, count in session.execute(recent, {"ids": ids, "since": now - RECEIPTS_WINDOW}):
        if status not in OPEN_RECEIPTS:
            receipts[connection][status] = count
    for connection, status, count in session.execute(open_):
        receipts[connection][status] = count
    return receipts


def connection_states(
    session: Session,
    cfg: Config,
    now: datetime,
    only: str | None = None,
    polled: frozenset[str] | None = None,
) -> list[ConnectionStatus]:
    """Every configured connection (or just `only`), in config order; `polled` names the ones
    read by polling (`polled_connections`), all of them when not given."""
    connections = [c for c in cfg.connections if only is None or c.id == only]
    ids = [c.id for c in connections]
    if not ids:
        return []
    cursors = {
        row.connection: row
        for row in session.exec(select(CursorRow).where(col(CursorRow.connection).in_(ids)))
    }
    leases = {
        row.name: row
        for row in session.exec(select(LeaseRow).where(col(LeaseRow.name).in_([f"poll:{i}" for i in ids])))
    }
    receipts = receipt_counts(session, ids, now)
    # One query per connection: max() of one connection is a single probe of the index, a max per
    # group of several would read every entry.
    last_webhook = {
        i: session.exec(select(func.max(ReceiptRow.received_at)).where(ReceiptRow.connection == i)).one()
        for i in ids
    }
    quarantined = dict(
        session.exec(
            select(QuarantineRow.connection, func.count())
            .where(col(QuarantineRow.connection).in_(ids), QuarantineRow.status == "open")
            .group_by(col(QuarantineRow.connection))
        ).all()
    )
    newest_failed = (
        select(func.max(ReceiptRow.id))
        .where(col(ReceiptRow.connection).in_(ids), ReceiptRow.status == "failed")
        .group_by(col(ReceiptRow.connection))
    )
    errors = {
        connection: error or "failed"
        for connection, error in session.exec(
            select(ReceiptRow.connection, ReceiptRow.error).where(col(ReceiptRow.id).in_(newest_failed))
        )
    }

    states = []
    for conn in connections:
        cursor = cursors.get(conn.id)
        lease = leases.get(f"poll:{conn.id}")
        last_poll = cursor.updated_at if cursor is not None else None
        is_polled = polled is None or conn.id in polled
        states.append(
            ConnectionStatus(
                id=conn.id,
                provider=conn.provider,
                enabled=conn.enabled,
                poll_interval_seconds=conn.poll_interval_seconds,
                polled=is_polled,
                cursor=cursor.value if cursor is not None else None,
                last_poll_at=last_poll,
                lag_seconds=(now - last_poll).total_seconds()
                if last_poll is not None and is_polled
                else None,
                next_poll_due_at=(last_poll + timedelta(seconds=conn.poll_interval_seconds))
                if last_poll is not None and is_polled
                else None,
                polling_now=lease.holder if lease is not None and lease.until > now else None,
                last_webhook_at=last_webhook.get(conn.id),
                receipts=dict(receipts.get(conn.id, {})),
                open_quarantine=int(quarantined.get(conn.id, 0)),
                last_error=errors.get(conn.id),
            )
        )
    return states
