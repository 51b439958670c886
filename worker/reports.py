"""Read-only views of the store for the CLI, as rich tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.table import Table
from rich.text import Text
from sqlalchemy import func
from sqlmodel import Session, col, select

from bookingsync.models.tables import (CursorRow, DeliveryRow, EventRow, LeaseRow, MeetingRow, QuarantineRow,
                                       ReceiptRow, SubscriptionStateRow)
from bookingsync.worker.config import Config
from bookingsync.worker.payloads import iso
from bookingsync.worker.quarantine import open_items
from bookingsync.worker.store import links_of


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    return table


def _add(table: Table, *cells: str | None) -> None:
    """Cells hold provider text (titles, reasons): shown as written, never read as markup."""
    table.add_row(*(Text(cell or "") for cell in cells))


def _counts(session: Session, model: Any) -> dict[str, int]:
    return dict(session.exec(select(model.status, func.count()).group_by(col(model.status))).all())


def status_tables(session: Session, cfg: Config, now: datetime) -> list[Table]:
    counts = Table(title="work", show_lines=False)
    counts.add_column("table")
    counts.add_column("by status")
    for name, model in (("meetings", MeetingRow), ("events", EventRow), ("deliveries", DeliveryRow),
                        ("webhook receipts", ReceiptRow), ("quarantine", QuarantineRow)):
        by_status = _counts(session, model)
        _add(counts, name, ", ".join(f"{k}={v}" for k, v in sorted(by_status.items())) or "—")
    next_timer = session.exec(select(func.min(EventRow.due_at)).where(EventRow.status == "pending",
                                                                       EventRow.due_at > now)).one()
    _add(counts, "next timer", iso(next_timer) or "—")

    conns = Table(title="connections")
    for column in ("id", "provider", "cursor", "cursor saved"):
        conns.add_column(column)
    cursors = {row.connection: row for row in session.exec(select(CursorRow))}
    providers = {conn.id: conn.provider for conn in cfg.connections}
    for conn_id in sorted(providers.keys() | cursors.keys()):
        row = cursors.get(conn_id)
        _add(conns, conn_id, providers.get(conn_id, "(not configured)"), str(row.value) if row else "—",
                      iso(row.updated_at) if row else "—")

    leases = Table(title="leases")
    for column in ("name", "holder", "until"):
        leases.add_column(column)
    for lease in session.exec(select(LeaseRow)):
        _add(leases, lease.name, lease.holder, iso(lease.until) + (" (expired)" if lease.until <= now else ""))
    for state in session.exec(select(SubscriptionStateRow).where(col(SubscriptionStateRow.disabled_at).is_not(None))):
        _add(leases, f"subscription {state.subscription_id}", "DISABLED", state.disabled_reason or "")
    return [counts, conns, leases]


def meetings_table(session: Session, limit: int) -> Table:
    table = Table(title="meetings")
    for column in ("id", "status", "start", "end", "title", "attendee", "links", "booked", "version"):
        table.add_column(column)
    rows = list(session.exec(select(MeetingRow).order_by(col(MeetingRow.updated_at).desc()).limit(limit)))
    links = links_of(session, [row.id for row in rows])
    for row in rows:
        _add(table, row.id, row.status, iso(row.start), iso(row.end), row.title or "", row.attendee_email or "",
                      ", ".join(f"{link.connection}:{link.external_id}" + (" (missing)" if link.missing else "")
                                for link in links[row.id]),
                      "yes" if row.booked else "no", str(row.version))
    return table


def events_table(session: Session, limit: int, meeting: str | None, status: str | None) -> Table:
    table = Table(title="events")
    for column in ("event_id", "type", "meeting", "seq", "status", "occurred_at", "due_at", "published_at"):
        table.add_column(column)
    query = select(EventRow)
    if meeting:
        query = query.where(EventRow.meeting_id == meeting)
    if status:
        query = query.where(EventRow.status == status)
    for row in session.exec(query.order_by(col(EventRow.id).desc()).limit(limit)):
        _add(table, row.event_id, row.type, row.meeting_id, str(row.sequence or ""), row.status,
                      iso(row.occurred_at), iso(row.due_at), iso(row.published_at) or "")
    return table


def deliveries_table(session: Session, limit: int, dead: bool) -> Table:
    table = Table(title="dead deliveries" if dead else "deliveries")
    for column in ("id", "event_id", "subscription", "status", "attempts", "last status", "last error", "due_at"):
        table.add_column(column)
    query = select(DeliveryRow)
    if dead:
        query = query.where(DeliveryRow.status == "dead")
    for row in session.exec(query.order_by(col(DeliveryRow.id).desc()).limit(limit)):
        _add(table, str(row.id), row.event_id, row.subscription_id, row.status, str(row.attempts),
                      str(row.last_status_code or ""), (row.last_error or "")[:80], iso(row.due_at))
    return table


def quarantine_table(session: Session, limit: int, connection: str | None) -> Table:
    table = Table(title="quarantine")
    for column in ("id", "connection", "source", "external_id", "reason", "seen", "first seen", "last seen"):
        table.add_column(column)
    for row in open_items(session, connection, limit):
        _add(table, str(row.id), row.connection, row.source, row.external_id or "", row.reason, str(row.seen_count),
                      iso(row.created_at), iso(row.last_seen_at))
    return table
