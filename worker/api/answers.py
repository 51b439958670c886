"""Rows of the store as the API's answers (and the status page's rows)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Path, Query, Request
from sqlmodel import Session, col
from sqlmodel.sql.expression import SelectOfScalar
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, AwareDatetime

from bookingsync.models.tables import DeliveryRow, EventRow, LinkRow, QuarantineRow

MAX_ID = 2**63 - 1  # a BIGINT: larger ids cannot exist, and PostgreSQL refuses to compare with them
# NUL cannot be stored or compared in PostgreSQL text; refuse it as bad input instead of failing on it.
NO_NUL = r"^[^\x00]*$"


def _utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the instant is outside the years 1 to 9999 in UTC") from None


Instant = Annotated[AwareDatetime, AfterValidator(_utc)]
Text = Annotated[str, Query(min_length=1, max_length=320, pattern=NO_NUL)]
PathText = Annotated[str, Path(min_length=1, max_length=255, pattern=NO_NUL)]
RowId = Annotated[int, Path(ge=1, le=MAX_ID)]


def delivery_out(row: DeliveryRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "event_id": row.event_id,
        "subscription_id": row.subscription_id,
        "status": row.status,
        "attempts": row.attempts,
        "due_at": row.due_at,
        "last_status_code": row.last_status_code,
        "last_error": row.last_error,
        "created_at": row.created_at,
        "finished_at": row.finished_at,
    }


def event_out(row: EventRow) -> dict[str, Any]:
    built = row.payload if isinstance(row.payload, dict) and "data" in row.payload else None
    return {
        "event_id": row.event_id,
        "type": row.type,
        "meeting_id": row.meeting_id,
        "status": row.status,
        "sequence": row.sequence,
        "position": row.feed_position,
        "occurred_at": row.occurred_at,
        "due_at": row.due_at,
        "published_at": row.published_at,
        "body": built,
    }


def feed_event(row: EventRow) -> dict[str, Any]:
    return {"position": row.feed_position, **row.payload}


def link_detail(link: LinkRow) -> dict[str, Any]:
    return {
        "connection": link.connection,
        "provider": link.provider,
        "external_id": link.external_id,
        "missing": link.missing,
        "mirrored": link.mirrored,
        "start": link.start,
        "end": link.end,
        "first_seen_at": link.first_seen_at,
        "last_seen_at": link.last_seen_at,
    }


def quarantine_out(row: QuarantineRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "connection": row.connection,
        "source": row.source,
        "external_id": row.external_id,
        "scope": row.scope,
        "reason": row.reason,
        "status": row.status,
        "seen_count": row.seen_count,
        "created_at": row.created_at,
        "last_seen_at": row.last_seen_at,
        "resolved_at": row.resolved_at,
        "raw": row.raw,
    }


def single_values(request: Request) -> None:
    """Every query parameter of the API takes one value: `?status=a&status=b` is refused, not half-read."""
    params = request.query_params
    repeated = sorted({name for name in params if len(params.getlist(name)) > 1})
    if repeated:
        raise RequestValidationError(
            [
                {
                    "type": "repeated",
                    "loc": ("query", name),
                    "input": params.getlist(name),
                    "msg": f"give `{name}` once",
                }
                for name in repeated
            ]
        )


def newest_first(
    session: Session, query: SelectOfScalar[Any], model: Any, before: int | None, limit: int
) -> tuple[list[Any], int | None]:
    """A page of `query`'s rows by id, newest first, below `before`; and the `before` of the next page."""
    if before is not None:
        query = query.where(col(model.id) < before)
    rows = list(session.exec(query.order_by(col(model.id).desc()).limit(limit + 1)))
    page = rows[:limit]
    return page, (page[-1].id if len(rows) > limit else None)
