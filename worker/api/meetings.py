"""`/v1/meetings`: canonical meetings, filtered and paged; one meeting with its links, events and deliveries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Depends, Query
from sqlalchemy import and_, exists, or_
from sqlmodel import col, select

from bookingsync.models.errors import NotFound
from bookingsync.models.meeting import MeetingStatus
from bookingsync.models.tables import DeliveryRow, EventRow, LinkRow, MeetingRow
from bookingsync.worker.api.answers import Instant, PathText, Text, delivery_out, event_out, link_detail
from bookingsync.worker.api.auth import READ, Keys, require
from bookingsync.worker.api.schemas import ErrorOut, MeetingDetail, MeetingPage
from bookingsync.worker.db import transaction
from bookingsync.worker.payloads import meeting_json
from bookingsync.worker.runtime import Runtime
from bookingsync.worker.store import links_of

MAX_PAGE = 500


# `<start in microseconds since the epoch>:<meeting id>`: every string of this shape is a valid place
# to continue from (keyset paging on start, id), so a cursor can never be "wrong", only past the end.
CURSOR = r"^[0-9]{1,17}:[A-Za-z0-9_-]{1,40}$"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _encode(row: MeetingRow) -> str:
    return f"{(row.start - EPOCH) // timedelta(microseconds=1)}:{row.id}"


def _decode(cursor: str) -> tuple[datetime, str]:
    micros, _, meeting_id = cursor.partition(":")
    return EPOCH + timedelta(microseconds=int(micros)), meeting_id


def routes(rt: Runtime, keys: Keys) -> APIRouter:
    router = APIRouter(prefix="/v1/meetings", tags=["meetings"], dependencies=[Depends(require(keys, READ))])

    @router.get("", response_model=MeetingPage, summary="Meetings, by start time")
    def list_meetings(
        status: MeetingStatus | None = None,
        start_from: Instant | None = Query(None, description="Meetings starting at or after"),
        start_to: Instant | None = Query(None, description="Meetings starting before"),
        attendee_email: Text | None = None,
        connection: Text | None = Query(None, description="Linked to this connection"),
        limit: int = Query(50, ge=1, le=MAX_PAGE),
        cursor: str | None = Query(None, pattern=CURSOR, description="`next_cursor` of the previous page"),
    ) -> dict:
        query = select(MeetingRow)
        if status is not None:
            query = query.where(MeetingRow.status == status.value)
        if start_from is not None:
            query = query.where(col(MeetingRow.start) >= start_from)
        if start_to is not None:
            query = query.where(col(MeetingRow.start) < start_to)
        if attendee_email is not None:
            query = query.where(MeetingRow.attendee_email == attendee_email.strip().lower())
        if connection is not None:
            query = query.where(
                exists().where(
                    col(LinkRow.meeting_id) == col(MeetingRow.id), col(LinkRow.connection) == connection
                )
            )
        if cursor is not None:
            after_start, after_id = _decode(cursor)
            query = query.where(
                or_(
                    col(MeetingRow.start) > after_start,
                    and_(col(MeetingRow.start) == after_start, col(MeetingRow.id) > after_id),
                )
            )
        with transaction(rt.engine) as session:
            rows = list(
                session.exec(query.order_by(col(MeetingRow.start), col(MeetingRow.id)).limit(limit + 1))
            )
            page = rows[:limit]
            links = links_of(session, [row.id for row in page])
        return {
            "meetings": [meeting_json(row, links[row.id]) for row in page],
            "next_cursor": _encode(page[-1]) if len(rows) > limit else None,
        }

    @router.get(
        "/{meeting_id}",
        response_model=MeetingDetail,
        summary="One meeting: links, events, deliveries",
        responses={404: {"model": ErrorOut, "description": "No such meeting"}},
    )
    def get_meeting(meeting_id: PathText) -> dict:
        with transaction(rt.engine) as session:
            row = session.get(MeetingRow, meeting_id)
            if row is None:
                raise NotFound(f"meeting {meeting_id!r} does not exist")
            links = links_of(session, [row.id])[row.id]
            events = list(
                session.exec(select(EventRow).where(EventRow.meeting_id == row.id).order_by(col(EventRow.id)))
            )
            deliveries = (
                list(
                    session.exec(
                        select(DeliveryRow)
                        .where(col(DeliveryRow.event_id).in_([e.event_id for e in events]))
                        .order_by(col(DeliveryRow.id))
                    )
                )
                if events
                else []
            )
        return {
            "meeting": meeting_json(row, links),
            "booked": row.booked,
            "deleted": row.deleted,
            "version": row.version,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
            "links": [link_detail(link) for link in sorted(links, key=lambda item: item.id or 0)],
            "events": [event_out(event) for event in events],
            "deliveries": [delivery_out(delivery) for delivery in deliveries],
        }

    return router
