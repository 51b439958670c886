"""Provider records we could not normalise: kept whole with the reason, listed, replayable."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from bookingsync.adapters.base import RawRecord
from bookingsync.models.tables import QuarantineRow


def raw_hash(payload: Any) -> str:
    canonical = json.dumps(_jsonable(payload), sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(canonical.encode()).hexdigest()


def add(
    session: Session, *, connection: str, record: RawRecord, reason: str, source: str, now: datetime
) -> QuarantineRow:
    """Keep a bad record once: the same bytes read again only count as seen again."""
    digest = raw_hash(record.payload)
    existing = session.exec(
        select(QuarantineRow).where(
            QuarantineRow.connection == connection,
            QuarantineRow.raw_hash == digest,
            QuarantineRow.status == "open",
        )
    ).first()
    if existing is not None:
        existing.seen_count += 1
        existing.last_seen_at = now
        existing.reason = reason
        return existing
    row = QuarantineRow(
        connection=connection,
        external_id=record.external_id,
        scope=record.scope,
        source=source,
        raw=_jsonable(record.payload),
        raw_hash=digest,
        reason=reason,
        created_at=now,
        last_seen_at=now,
    )
    session.add(row)
    return row


def has_open(session: Session, connection: str) -> bool:
    query = select(QuarantineRow.id).where(
        QuarantineRow.connection == connection, QuarantineRow.status == "open"
    )
    return session.exec(query.limit(1)).first() is not None


def supersede(session: Session, *, connection: str, external_id: str, now: datetime) -> None:
    """A good version of the record arrived: its open quarantine items are history."""
    rows = session.exec(
        select(QuarantineRow).where(
            QuarantineRow.connection == connection,
            QuarantineRow.external_id == external_id,
            QuarantineRow.status == "open",
        )
    )
    for row in rows:
        row.status, row.resolved_at = "superseded", now


def open_items(session: Session, connection: str | None = None, limit: int = 100) -> list[QuarantineRow]:
    query = select(QuarantineRow).where(QuarantineRow.status == "open")
    if connection:
        query = query.where(QuarantineRow.connection == connection)
    return list(session.exec(query.order_by(col(QuarantineRow.id).desc()).limit(limit)))


def _jsonable(payload: Any) -> Any:
    if isinstance(payload, (dict, list, str, int, float, bool)) or payload is None:
        return payload
    return repr(payload)
