"""`/v1/subscriptions`: each subscription's state and backlog; re-enable; replay from a time."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from sqlmodel import Session, select

from bookingsync.models.errors import NotFound
from bookingsync.models.tables import SubscriptionStateRow
from bookingsync.worker import redelivery
from bookingsync.worker.api.answers import PathText
from bookingsync.worker.api.auth import READ, WRITE, Keys, require
from bookingsync.worker.api.schemas import (
    BodyErrorOut,
    EnabledOut,
    ErrorOut,
    ReplayedOut,
    ReplaySince,
    SubscriptionOut,
)
from bookingsync.worker.config import Config
from bookingsync.worker.db import transaction
from bookingsync.worker.runtime import Runtime

NOT_FOUND = {404: {"model": ErrorOut, "description": "No such subscription in the config"}}


def subscriptions_out(session: Session, cfg: Config) -> list[dict[str, Any]]:
    """Every configured subscription with its state and delivery backlog."""
    states = {row.subscription_id: row for row in session.exec(select(SubscriptionStateRow))}
    backlogs = redelivery.backlogs(session)
    out = []
    for sub in cfg.subscriptions:
        state, backlog = states.get(sub.id), backlogs.get(sub.id)
        disabled_at = state.disabled_at if state is not None else None
        out.append(
            {
                "id": sub.id,
                "url": sub.url,
                "events": [kind.value for kind in sub.events],
                "enabled": disabled_at is None,
                "disabled_at": disabled_at,
                "disabled_reason": state.disabled_reason if state is not None else None,
                "backlog": backlog.by_status if backlog else {},
                "oldest_pending_due_at": backlog.oldest_due if backlog else None,
            }
        )
    return out


def routes(rt: Runtime, keys: Keys) -> APIRouter:
    router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])

    def one(subscription_id: str) -> dict[str, Any]:
        with transaction(rt.engine) as session:
            found = [s for s in subscriptions_out(session, rt.config) if s["id"] == subscription_id]
        if not found:
            raise NotFound(f"no subscription named {subscription_id!r} is configured")
        return found[0]

    @router.get(
        "",
        response_model=list[SubscriptionOut],
        summary="Subscriptions, their state and backlog",
        dependencies=[Depends(require(keys, READ))],
    )
    def list_subscriptions() -> list[dict[str, Any]]:
        with transaction(rt.engine) as session:
            return subscriptions_out(session, rt.config)

    @router.get(
        "/{subscription_id}",
        response_model=SubscriptionOut,
        summary="One subscription",
        dependencies=[Depends(require(keys, READ))],
        responses=NOT_FOUND,
    )
    def get_subscription(subscription_id: PathText) -> dict[str, Any]:
        return one(subscription_id)

    @router.post(
        "/{subscription_id}/enable",
        response_model=EnabledOut,
        summary="Re-enable after a 410, sending what it missed meanwhile",
        dependencies=[Depends(require(keys, WRITE))],
        responses={**NOT_FOUND, 409: {"model": ErrorOut, "description": "Publishing kept it busy; retry"}},
    )
    def enable_subscription(subscription_id: PathText) -> dict[str, Any]:
        with transaction(rt.engine) as session:
            done = redelivery.enable(session, rt.config, subscription_id, rt.clock.now())
        return {
            "subscription_id": subscription_id,
            "was_disabled": done.was_disabled,
            "redelivered": done.requeued + done.created,
        }

    @router.post(
        "/{subscription_id}/replay",
        response_model=ReplayedOut,
        status_code=202,
        summary="Send every event published since a time again (history for a new subscription too)",
        dependencies=[Depends(require(keys, WRITE))],
        responses={
            **NOT_FOUND,
            409: {"model": ErrorOut, "description": "The subscription is disabled"},
            400: {"model": BodyErrorOut, "description": "The body is not JSON"},
        },
    )
    def replay_subscription(subscription_id: PathText, body: ReplaySince) -> dict[str, Any]:
        with transaction(rt.engine) as session:
            queued = redelivery.replay_since(session, rt.config, subscription_id, body.since, rt.clock.now())
        return {"subscription_id": subscription_id, "queued": queued}

    return router
