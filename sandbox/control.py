"""Control-API routes every simulator shares: the fault queue and the request log.

Each provider's control module (`leezy.control`, `leandata.control`) adds its own meeting routes
and passes `build_mutation`, which turns a ``mutate`` fault's JSON ``action`` into a callable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict

from bookingsync.sandbox.errors import SandboxError, UnknownMeetingError
from bookingsync.sandbox.faults import Fault, FaultQueue
from bookingsync.sandbox.request_log import RequestLog

MutationFactory = Callable[[dict[str, Any]], tuple[Callable[[], None], str]]


class ControlBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FaultBody(ControlBody):
    kind: str
    path: str | None = None
    method: str | None = None
    times: int = 1
    retry_after: int | None = None
    seconds: float = 0.0
    variant: str | None = None
    offset: int | None = None
    action: dict[str, Any] | None = None


class TokenBody(ControlBody):
    token: str
    scopes: list[str]


def scoped_token_route(router: APIRouter, add_token: Callable[[str, list[str]], None]) -> None:
    """``POST /tokens`` ``{"token", "scopes"}`` → 201, for a simulator whose tokens carry scopes."""

    @router.post("/tokens", status_code=201)
    def add_scoped_token(body: TokenBody) -> dict[str, Any]:
        add_token(body.token, body.scopes)
        return {"token": body.token, "scopes": sorted(body.scopes)}


def guarded(change: Callable[[], Any]) -> Response | None:
    """Run a state change; a refusal becomes the control API's ``{"error"}`` answer."""
    try:
        change()
    except UnknownMeetingError as exc:
        return JSONResponse({"error": str(exc)}, 404)
    except (SandboxError, TypeError, ValueError, KeyError) as exc:
        return JSONResponse({"error": str(exc)}, 400)
    return None


def common_router(
    faults: FaultQueue, requests: RequestLog, build_mutation: MutationFactory, *, listing_path: str
) -> APIRouter:
    # No prefix here: the provider's control router, which includes this one, adds it.
    router = APIRouter()

    def queued() -> dict[str, Any]:
        return {"faults": [f.public() for f in faults.pending()]}

    @router.get("/faults")
    def list_faults() -> dict[str, Any]:
        return queued()

    @router.post("/faults", status_code=201)
    def add_fault(body: FaultBody) -> Response:
        def add() -> None:
            action, description, path = None, None, body.path
            if body.kind == "mutate":
                if body.action is None:
                    raise SandboxError("A mutate fault needs an action.")
                action, description = build_mutation(body.action)
                path = path or listing_path
            faults.add(
                Fault(
                    kind=body.kind,
                    path=path,
                    method=body.method,
                    times=body.times,
                    retry_after=body.retry_after,
                    seconds=body.seconds,
                    variant=body.variant,
                    offset=body.offset,
                    action=action,
                    description=description,
                )
            )

        return guarded(add) or JSONResponse(queued(), 201)

    @router.delete("/faults", status_code=204)
    def clear_faults() -> None:
        faults.clear()

    @router.get("/requests")
    def list_requests() -> dict[str, Any]:
        return {"requests": [r.public() for r in requests.entries()]}

    @router.delete("/requests", status_code=204)
    def clear_requests() -> None:
        requests.clear()

    return router
