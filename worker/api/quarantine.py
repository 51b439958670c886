"""`/v1/quarantine`: provider records that could not be normalised; replay one after a fix."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query
from sqlmodel import select

from bookingsync.models.errors import Conflict, NotFound
from bookingsync.models.tables import QuarantineRow
from bookingsync.worker.api.answers import MAX_ID, RowId, Text, newest_first, quarantine_out
from bookingsync.worker.api.auth import READ, WRITE, Keys, require
from bookingsync.worker.api.schemas import ErrorOut, QuarantineOut, QuarantinePage, QuarantineReplayOut
from bookingsync.worker.db import transaction
from bookingsync.worker.ingest import replay_quarantined
from bookingsync.worker.runtime import Runtime

MAX_PAGE = 500
NOT_FOUND = {404: {"model": ErrorOut, "description": "No such quarantine item"}}


def replay_item(rt: Runtime, item_id: int) -> dict:
    """Normalise the item again and apply it; Conflict when it is closed or still fails."""
    with transaction(rt.engine) as session:
        row = session.get(QuarantineRow, item_id)
        if row is None:
            raise NotFound(f"quarantine item {item_id} does not exist")
        if row.status != "open":
            raise Conflict(f"quarantine item {item_id} is {row.status} already")
        if rt.config.connection(row.connection) is None:
            raise Conflict(f"connection {row.connection!r} of item {item_id} is not configured")
    outcome = replay_quarantined(rt, item_id)
    with transaction(rt.engine) as session:
        row = session.get(QuarantineRow, item_id)
        assert row is not None  # items are never deleted while open
        if row.status != "replayed":
            raise Conflict(outcome)
        return {"item": quarantine_out(row), "outcome": outcome}


def routes(rt: Runtime, keys: Keys) -> APIRouter:
    router = APIRouter(prefix="/v1/quarantine", tags=["quarantine"])

    @router.get(
        "",
        response_model=QuarantinePage,
        summary="Quarantined records, newest first",
        dependencies=[Depends(require(keys, READ))],
    )
    def list_quarantine(
        connection: Text | None = None,
        status: Literal["open", "replayed", "superseded"] | None = Query(
            "open", description="open (the default) needs attention"
        ),
        before: int | None = Query(None, ge=1, le=MAX_ID),
        limit: int = Query(50, ge=1, le=MAX_PAGE),
    ) -> dict:
        query = select(QuarantineRow)
        if connection is not None:
            query = query.where(QuarantineRow.connection == connection)
        if status is not None:
            query = query.where(QuarantineRow.status == status)
        with transaction(rt.engine) as session:
            page, next_before = newest_first(session, query, QuarantineRow, before, limit)
        return {"items": [quarantine_out(row) for row in page], "next_before": next_before}

    @router.get(
        "/{item_id}",
        response_model=QuarantineOut,
        summary="One quarantined record",
        dependencies=[Depends(require(keys, READ))],
        responses=NOT_FOUND,
    )
    def get_item(item_id: RowId) -> dict:
        with transaction(rt.engine) as session:
            row = session.get(QuarantineRow, item_id)
            if row is None:
                raise NotFound(f"quarantine item {item_id} does not exist")
        return quarantine_out(row)

    @router.post(
        "/{item_id}/replay",
        response_model=QuarantineReplayOut,
        summary="Normalise and apply it again",
        dependencies=[Depends(require(keys, WRITE))],
        responses={
            **NOT_FOUND,
            409: {
                "model": ErrorOut,
                "description": "Already closed, its connection is gone, or it still cannot be normalised",
            },
        },
    )
    def replay(item_id: RowId) -> dict:
        return replay_item(rt, item_id)

    return router
