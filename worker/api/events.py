"""`/v1/events`: the event feed in commit order (worker/feed.py), and one event with its deliveries.

A consumer can run on the feed alone: read `?after=<cursor>`, process the events, keep
`next_cursor`, and read again (at once while `has_more`, else after a pause). Every published
event appears exactly once, in the order its publishing committed; `data.sequence` orders one
meeting's events.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from sqlmodel import col, select

from bookingsync.models.errors import NotFound
from bookingsync.models.tables import DeliveryRow, EventRow
from bookingsync.worker import feed
from bookingsync.worker.api.answers import MAX_ID, PathText, delivery_out, event_out, feed_event
from bookingsync.worker.api.auth import READ, Keys, require
from bookingsync.worker.api.schemas import ErrorOut, EventDetail, FeedPage
from bookingsync.worker.db import transaction
from bookingsync.worker.runtime import Runtime


def routes(rt: Runtime, keys: Keys) -> APIRouter:
    router = APIRouter(prefix="/v1/events", tags=["events"], dependencies=[Depends(require(keys, READ))])

    @router.get("", response_model=FeedPage, summary="The event feed, in commit order")
    def read_feed(
        after: int = Query(
            0, ge=0, le=MAX_ID, description="The last position you processed (0: from the start)"
        ),
        limit: int = Query(100, ge=1, le=feed.MAX_PAGE),
    ) -> dict:
        with transaction(rt.engine) as session:
            rows = feed.read(session, after, limit + 1)
        page = rows[:limit]
        return {
            "events": [feed_event(row) for row in page],
            "next_cursor": page[-1].feed_position if page else after,
            "has_more": len(rows) > limit,
        }

    @router.get(
        "/{event_id}",
        response_model=EventDetail,
        summary="One event, published or not, with its deliveries",
        responses={404: {"model": ErrorOut, "description": "No such event"}},
    )
    def get_event(event_id: PathText) -> dict:
        with transaction(rt.engine) as session:
            row = session.exec(select(EventRow).where(EventRow.event_id == event_id)).first()
            if row is None:
                raise NotFound(f"event {event_id!r} does not exist")
            deliveries = list(
                session.exec(
                    select(DeliveryRow).where(DeliveryRow.event_id == event_id).order_by(col(DeliveryRow.id))
                )
            )
        return {"event": event_out(row), "deliveries": [delivery_out(d) for d in deliveries]}

    return router
