"""Provider records we could not normalise: kept whole with the reason, listed, replayable."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from bookingsync.adapters.base import RawRecord
from bookingsync.models.tables import QuarantineRow


def add(session: Session, *, connection: str, record: RawRecord, reason: str, source: str,
        now: datetime) -> QuarantineRow:
    row = QuarantineRow(connection=connection, external_id=record.external_id, scope=record.scope, source=source,
                        raw=_jsonable(record.payload), reason=reason, created_at=now)
    session.add(row)
    return row


def open_items(session: Session, connection: str | None = None, limit: int = 100) -> list[QuarantineRow]:
    query = select(QuarantineRow).where(QuarantineRow.status == "open")
    if connection:
        query = query.where(QuarantineRow.connection == connection)
    return list(session.exec(query.order_by(col(QuarantineRow.id).desc()).limit(limit)))


def _jsonable(payload: Any) -> Any:
    if isinstance(payload, (dict, list, str, int, float, bool)) or payload is None:
        return payload
    return repr(payload)
