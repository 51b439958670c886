"""Read-only views of the store for the CLI: rows (for `--json`) and rich tables made from them.

Every view is a list of plain dicts first; the table is a rendering of those rows. Ids are never
cut: their columns are as wide as the longest id, and the other columns give way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.table import Table
from rich.text import Text
from sqlalchemy import func
from sqlmodel import Session, col, select

from bookingsync.models.tables import (
    CursorRow,
    DeliveryRow,
    EventRow,
    LeaseRow,
    MeetingRow,
    PollStateRow,
    QuarantineRow,
    ReceiptRow,
    SubscriptionStateRow,
)
from bookingsync.worker.config import Config
from bookingsync.worker.payloads import iso
from bookingsync.worker.poll_state import describe as describe_polling
from bookingsync.worker.quarantine import open_items
from bookingsync.worker.store import links_of

EVENT_STATUSES = ("pending", "leased", "published", "cancelled", "dropped")
DELIVERY_STATUSES = ("pending", "leased", "succeeded", "dead", "skipped")
ID_COLUMNS = frozenset(
    {
        "id",
        "event_id",
        "meeting",
        "meeting_id",
        "subscription",
        "connection",
        "holder",
        "links",
        "external_id",
    }
)

Row = dict[str, Any]


class AmbiguousPrefix(LookupError):
    """A meeting id prefix that names no meeting, or more than one."""


def table(title: str, rows: list[Row], columns: list[str]) -> Table:
    """`rows` as a table; id columns never shrink below their longest value."""
    out = Table(title=title)
    for name in columns:
        if name in ID_COLUMNS:
            widest = max((len(_cell(row.get(name))) for row in rows), default=len(name))
            out.add_column(name, no_wrap=True, min_width=max(widest, len(name)))
        else:
            out.add_column(name)
    for row in rows:
        # Cells hold provider text (titles, reasons): shown as written, never read as markup.
        out.add_row(*(Text(_cell(row.get(name))) for name in columns))
    return out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    return str(value)


def _age(then: datetime | None, now: datetime) -> str:
    if then is None:
        return "never"
    seconds = int((now - then).total_seconds())
    if seconds < 0:
        return f"in {-seconds}s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def readable_cursor(value: Any) -> str:
    """A cursor as `key=value` pairs; nested tables and lists are summarised, not dumped."""
    if not isinstance(value, dict):
        return "—" if value is None else str(value)
    parts = []
    for key, item in sorted(value.items()):
        if isinstance(item, dict):
            parts.append(f"{key}: {len(item)} entr{'y' if len(item) == 1 else 'ies'}")
        elif isinstance(item, list):
            parts.append(f"{key}: {len(item)} item{'' if len(item) == 1 else 's'}")
        else:
            parts.append(f"{key}={'—' if item is None else item}")
    return ", ".join(parts) or "—"


def _counts(session: Session, model: Any) -> dict[str, int]:
    return dict(session.exec(select(model.status, func.count()).group_by(col(model.status))).all())


def status(session: Session, cfg: Config, now: datetime) -> dict[str, list[Row]]:
    work = []
    for name, model in (
        ("meetings", MeetingRow),
        ("events", EventRow),
        ("deliveries", DeliveryRow),
        ("webhook receipts", ReceiptRow),
        ("quarantine", QuarantineRow),
    ):
        by_status = _counts(session, model)
        work.append(
            {
                "table": name,
                "by status": ", ".join(f"{k}={v}" for k, v in sorted(by_status.items())) or "—",
                "counts": by_status,
            }
        )
    next_timer = session.exec(
        select(func.min(EventRow.due_at)).where(EventRow.status == "pending", EventRow.due_at > now)
    ).one()
    work.append({"table": "next timer", "by status": iso(next_timer) or "—", "counts": {}})

    cursors = {row.connection: row for row in session.exec(select(CursorRow))}
    polls = {row.connection: row for row in session.exec(select(PollStateRow))}
    configured = {conn.id: conn for conn in cfg.connections}
    connections = []
    for conn_id in sorted(configured.keys() | cursors.keys()):
        row, conn = cursors.get(conn_id), configured.get(conn_id)
        connections.append(
            {
                "connection": conn_id,
                "provider": conn.provider if conn else "(not in this config)",
                "enabled": conn.enabled if conn else None,
                "cursor": readable_cursor(row.value) if row else "—",
                "cursor saved": f"{iso(row.updated_at)} ({_age(row.updated_at, now)})" if row else "never",
                # Back-off ("backing off until …: 429"), the watch-list schedule, skipped ticks.
                "polling": describe_polling(polls.get(conn_id), now),
                "raw cursor": row.value if row else None,
            }
        )

    leases = [
        {
            "name": lease.name,
            "holder": lease.holder,
            "until": iso(lease.until) + (" (expired)" if lease.until <= now else ""),
        }
        for lease in session.exec(select(LeaseRow).order_by(col(LeaseRow.name)))
    ]
    disabled = [
        {
            "subscription": state.subscription_id,
            "disabled at": iso(state.disabled_at),
            "reason": state.disabled_reason or "",
        }
        for state in session.exec(
            select(SubscriptionStateRow).where(col(SubscriptionStateRow.disabled_at).is_not(None))
        )
    ]
    return {"work": work, "connections": connections, "leases": leases, "disabled subscriptions": disabled}


def status_tables(session: Session, cfg: Config, now: datetime) -> list[Table]:
    return report_tables(status(session, cfg, now))


def report_tables(report: dict[str, list[Row]]) -> list[Table]:
    return [
        table("work", report["work"], ["table", "by status"]),
        table(
            "connections",
            report["connections"],
            ["connection", "provider", "cursor", "cursor saved", "polling"],
        ),
        table("leases", report["leases"], ["name", "holder", "until"]),
        table(
            "disabled subscriptions",
            report["disabled subscriptions"],
            ["subscription", "disabled at", "reason"],
        ),
    ]


MEETING_COLUMNS = ["id", "status", "start", "end", "title", "attendee", "links", "booked", "version"]


def meetings(session: Session, limit: int) -> list[Row]:
    rows = list(session.exec(select(MeetingRow).order_by(col(MeetingRow.updated_at).desc()).limit(limit)))
    links = links_of(session, [row.id for row in rows])
    return [
        {
            "id": row.id,
            "status": row.status,
            "start": iso(row.start),
            "end": iso(row.end),
            "title": row.title,
            "attendee": row.attendee_email,
            "links": [
                f"{link.connection}:{link.external_id}" + (" (missing)" if link.missing else "")
                for link in links[row.id]
            ],
            "booked": row.booked,
            "version": row.version,
        }
        for row in rows
    ]


def resolve_meeting(session: Session, prefix: str) -> str:
    """The one meeting id starting with `prefix`; AmbiguousPrefix when none or several do."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    found = list(
        session.exec(
            select(MeetingRow.id)
            .where(col(MeetingRow.id).like(f"{escaped}%", escape="\\"))
            .order_by(col(MeetingRow.id))
            .limit(3)
        )
    )
    if not found:
        raise AmbiguousPrefix(f"no meeting id starts with {prefix!r}")
    if len(found) > 1 and prefix not in found:
        shown = ", ".join(found[:2]) + (", …" if len(found) > 2 else "")
        raise AmbiguousPrefix(f"{prefix!r} starts more than one meeting id ({shown}); give more of it")
    return prefix if prefix in found else found[0]


EVENT_COLUMNS = ["event_id", "type", "meeting", "seq", "status", "occurred_at", "due_at", "published_at"]


def events(session: Session, limit: int, meeting: str | None, status_filter: str | None) -> list[Row]:
    query = select(EventRow)
    if meeting:
        query = query.where(EventRow.meeting_id == meeting)
    if status_filter:
        query = query.where(EventRow.status == status_filter)
    return [
        {
            "event_id": row.event_id,
            "type": row.type,
            "meeting": row.meeting_id,
            "seq": row.sequence,
            "status": row.status,
            "occurred_at": iso(row.occurred_at),
            "due_at": iso(row.due_at),
            "published_at": iso(row.published_at),
        }
        for row in session.exec(query.order_by(col(EventRow.id).desc()).limit(limit))
    ]


DELIVERY_COLUMNS = [
    "id",
    "event_id",
    "subscription",
    "status",
    "attempts",
    "last status",
    "last error",
    "due_at",
]


def deliveries(session: Session, limit: int, dead: bool) -> list[Row]:
    query = select(DeliveryRow)
    if dead:
        query = query.where(DeliveryRow.status == "dead")
    return [
        {
            "id": row.id,
            "event_id": row.event_id,
            "subscription": row.subscription_id,
            "status": row.status,
            "attempts": row.attempts,
            "last status": row.last_status_code,
            "last error": row.last_error,
            "due_at": iso(row.due_at),
        }
        for row in session.exec(query.order_by(col(DeliveryRow.id).desc()).limit(limit))
    ]


QUARANTINE_COLUMNS = [
    "id",
    "connection",
    "source",
    "external_id",
    "reason",
    "seen",
    "first seen",
    "last seen",
]


def quarantine(session: Session, limit: int, connection: str | None) -> list[Row]:
    return [
        {
            "id": row.id,
            "connection": row.connection,
            "source": row.source,
            "external_id": row.external_id,
            "reason": row.reason,
            "seen": row.seen_count,
            "first seen": iso(row.created_at),
            "last seen": iso(row.last_seen_at),
        }
        for row in open_items(session, connection, limit)
    ]


def meetings_table(session: Session, limit: int) -> Table:
    return table("meetings", meetings(session, limit), MEETING_COLUMNS)


def events_table(session: Session, limit: int, meeting: str | None, status_filter: str | None) -> Table:
    return table("events", events(session, limit, meeting, status_filter), EVENT_COLUMNS)


def deliveries_table(session: Session, limit: int, dead: bool) -> Table:
    return table(
        "dead deliveries" if dead else "deliveries", deliveries(session, limit, dead), DELIVERY_COLUMNS
    )


def quarantine_table(session: Session, limit: int, connection: str | None) -> Table:
    return table("quarantine", quarantine(session, limit, connection), QUARANTINE_COLUMNS)
