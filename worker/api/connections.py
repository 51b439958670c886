"""`/v1/connections`: each connection's last poll, lag, error and next due poll (worker/connection_status.py)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends

from bookingsync.models.errors import NotFound
from bookingsync.worker.api.answers import PathText
from bookingsync.worker.api.auth import READ, Keys, require
from bookingsync.worker.api.schemas import ConnectionOut, ErrorOut
from bookingsync.worker.connection_status import connection_states, polled_connections
from bookingsync.worker.db import transaction
from bookingsync.worker.runtime import Runtime


def routes(rt: Runtime, keys: Keys) -> APIRouter:
    router = APIRouter(
        prefix="/v1/connections", tags=["connections"], dependencies=[Depends(require(keys, READ))]
    )

    @router.get("", response_model=list[ConnectionOut], summary="Every configured connection's state")
    def list_connections() -> list[dict[str, Any]]:
        with transaction(rt.engine) as session:
            states = connection_states(session, rt.config, rt.clock.now(), polled=polled_connections(rt))
        return [asdict(state) for state in states]

    @router.get(
        "/{connection_id}",
        response_model=ConnectionOut,
        summary="One connection's state",
        responses={404: {"model": ErrorOut, "description": "No such connection in the config"}},
    )
    def get_connection(connection_id: PathText) -> dict[str, Any]:
        with transaction(rt.engine) as session:
            states = connection_states(
                session, rt.config, rt.clock.now(), only=connection_id, polled=polled_connections(rt)
            )
        if not states:
            raise NotFound(f"no connection named {connection_id!r} is configured")
        return asdict(states[0])

    return router
