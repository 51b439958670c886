"""`/v1/deliveries`: deliveries to subscribers (and route / actor targets), newest first; replay one."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query
from sqlmodel import select

from bookingsync.models.errors import NotFound
from bookingsync.models.tables import DeliveryRow
from bookingsync.worker import redelivery
from bookingsync.worker.api.answers import MAX_ID, RowId, Text, delivery_out, newest_first
from bookingsync.worker.api.auth import READ, WRITE, Keys, require
from bookingsync.worker.api.schemas import DeliveryOut, DeliveryPage, ErrorOut
from bookingsync.worker.db import transaction
from bookingsync.worker.runtime import Runtime

MAX_PAGE = 500
DeliveryStatus = Literal["pending", "leased", "succeeded", "dead", "skipped"]


def routes(rt: Runtime, keys: Keys) -> APIRouter:
    router = APIRouter(prefix="/v1/deliveries", tags=["deliveries"])

    @router.get(
        "",
        response_model=DeliveryPage,
        summary="Deliveries, newest first",
        dependencies=[Depends(require(keys, READ))],
    )
    def list_deliveries(
        subscription: Text | None = Query(None, description="Only this subscription (or target)"),
        status: DeliveryStatus | None = Query(None, description="`dead` lists the dead letters"),
        event_id: Text | None = None,
        before: int | None = Query(None, ge=1, le=MAX_ID, description="`next_before` of the last page"),
        limit: int = Query(50, ge=1, le=MAX_PAGE),
    ) -> dict:
        query = select(DeliveryRow)
        if subscription is not None:
            query = query.where(DeliveryRow.subscription_id == subscription)
        if status is not None:
            query = query.where(DeliveryRow.status == status)
        if event_id is not None:
            query = query.where(DeliveryRow.event_id == event_id)
        with transaction(rt.engine) as session:
            page, next_before = newest_first(session, query, DeliveryRow, before, limit)
        return {"deliveries": [delivery_out(row) for row in page], "next_before": next_before}

    @router.get(
        "/{delivery_id}",
        response_model=DeliveryOut,
        summary="One delivery",
        dependencies=[Depends(require(keys, READ))],
        responses={404: {"model": ErrorOut, "description": "No such delivery"}},
    )
    def get_delivery(delivery_id: RowId) -> dict:
        with transaction(rt.engine) as session:
            row = session.get(DeliveryRow, delivery_id)
            if row is None:
                raise NotFound(f"delivery {delivery_id} does not exist")
        return delivery_out(row)

    @router.post(
        "/{delivery_id}/replay",
        response_model=DeliveryOut,
        status_code=202,
        summary="Send a finished delivery again (same webhook-id)",
        dependencies=[Depends(require(keys, WRITE))],
        responses={
            404: {"model": ErrorOut, "description": "No such delivery"},
            409: {
                "model": ErrorOut,
                "description": "Already queued, or its subscription is disabled or no longer configured",
            },
        },
    )
    def replay_delivery(delivery_id: RowId) -> dict:
        with transaction(rt.engine) as session:
            row = redelivery.replay_one(session, rt.config, delivery_id, rt.clock.now())
            return delivery_out(row)

    return router
