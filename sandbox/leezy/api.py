"""The Leezy provider surface (`create_app`): the meetings list and the webhook subscription routes,
in Leezy's error envelope."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC
from email.utils import format_datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from bookingsync.sandbox.answer_faults import install_answer_faults
from bookingsync.sandbox.clock import parse_iso
from bookingsync.sandbox.faults import Fault
from bookingsync.sandbox.refusal import (
    Refused,
    bearer_token,
    fault_before,
    install_refusals,
    run_page_mutations,
)
from bookingsync.sandbox.request_log import install_request_log

from .control import control_router
from .records import (
    API_VERSION,
    DEFAULT_CHATBOT_ID,
    DEFAULT_LIMIT,
    EVENT_TYPES,
    MAX_LIMIT,
    MEETINGS_PATH,
    RATE_LIMIT_DESCRIPTION,
    RATE_LIMIT_RETRY_AFTER_SECONDS,
    SCOPE_MEETINGS,
    SCOPE_WEBHOOKS,
    LeezyMeeting,
    MeetingFilters,
)
from .state import LeezyState


def _error(status: int, code: str, description: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "error_description": description}, status, headers=headers)


def _parse_int(params: Any, name: str, default: int, low: int, high: int | None) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise Refused(
            _error(400, "invalid_request", f"The {name} parameter must be an integer {bound}; got {raw!r}.")
        )
    return value


def _parse_filters(params: Any) -> MeetingFilters:
    since = None
    if (raw := params.get("since")) is not None:
        try:
            since = parse_iso(raw)
        except ValueError:
            raise Refused(
                _error(
                    400, "invalid_request", f"The since parameter must be an ISO 8601 timestamp; got {raw!r}."
                )
            ) from None
    upcoming = (params.get("upcoming") or "false").lower()
    if upcoming not in ("true", "false"):
        raise Refused(_error(400, "invalid_request", "The upcoming parameter must be true or false."))
    return MeetingFilters(
        since=since,
        status=params.get("status"),
        chatbot_id=params.get("chatbot_id"),
        upcoming=upcoming == "true",
    )


def _malformed(state: LeezyState, variant: str | None) -> dict[str, Any]:
    stamp = state.now()
    record = LeezyMeeting(
        id=f"meeting_malformed_{secrets.token_hex(4)}",
        chatbot_id=DEFAULT_CHATBOT_ID,
        conversation_id="conv_malformed",
        title="Malformed record",
        description="",
        start_time=stamp,
        end_time=stamp,
        timezone="UTC",
        attendee_name=None,
        attendee_email="broken@example.com",
        attendee_phone=None,
        status="scheduled",
        meeting_url="",
        meeting_provider="custom",
        cancelled_at=None,
        cancelled_reason=None,
        created_at=stamp,
        updated_at=stamp,
    ).resource()
    if (variant or "bad_start_time") == "missing_attendee":
        del record["attributes"]["attendee"]
    else:
        record["attributes"]["start_time"] = "not-a-date"
    return record


def _fault_response(fault: Fault) -> Response | None:
    if fault.kind == "429":
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        return _error(429, "rate_limit_exceeded", RATE_LIMIT_DESCRIPTION, headers)
    if fault.kind == "500":
        return _error(500, "server_error", "The sandbox injected a server error.")
    return None


def _authorize(state: LeezyState, request: Request, scope: str) -> str:
    token = bearer_token(request)
    scopes = state.scopes_for(token) if token is not None else None
    if token is None or scopes is None:
        raise Refused(
            _error(
                401, "unauthorized", "Missing or invalid access token; send Authorization: Bearer <token>."
            )
        )
    if scope not in scopes:
        raise Refused(_error(403, "insufficient_scope", f"This access token lacks the {scope} scope."))
    if not state.allow_request(token):
        headers = {"Retry-After": str(RATE_LIMIT_RETRY_AFTER_SECONDS)} if state.retry_after_header else None
        raise Refused(_error(429, "rate_limit_exceeded", RATE_LIMIT_DESCRIPTION, headers))
    return token


async def _before(state: LeezyState, request: Request, scope: str, *, listing: bool = False) -> Fault | None:
    """Authorize, then apply an injected fault; returns a fault the listing must still honour."""
    _authorize(state, request, scope)
    return await fault_before(state.faults, request, _fault_response, listing=listing)


def create_app(state: LeezyState) -> FastAPI:
    app = FastAPI(title="Leezy sandbox", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.date_header = True  # the sandbox server leaves `Date` to us: it is this Leezy's clock
    install_request_log(app, state.requests, state.now)

    @app.middleware("http")
    async def date_header(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        response.headers["Date"] = format_datetime(state.now().astimezone(UTC), usegmt=True)
        return response

    install_answer_faults(app, state.faults)
    app.include_router(control_router(state))

    install_refusals(app)

    @app.get(MEETINGS_PATH)
    async def list_meetings(request: Request) -> Response:
        fault = await _before(state, request, SCOPE_MEETINGS, listing=True)
        params = request.query_params
        limit = _parse_int(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = _parse_int(params, "offset", 0, 0, None)
        filters = _parse_filters(params)
        data, total = state.list_page(filters, limit, offset)
        run_page_mutations(state.faults, request, offset)
        if fault is not None and fault.kind == "malformed":
            data.append(_malformed(state, fault.variant))
            total += 1
        meta = {
            "api_version": API_VERSION,
            "total": total,
            "limit": limit,
            "offset": offset,
            "has_more": offset + len(data) < total,
            "count": len(data),
        }
        return JSONResponse({"data": data, "meta": meta})

    @app.post("/api/v1/webhooks/subscribe")
    async def subscribe(request: Request) -> Response:
        await _before(state, request, SCOPE_WEBHOOKS)
        try:
            body = await request.json()
        except ValueError:
            body = None
        problem = _subscription_problem(body)
        if problem:
            return _error(400, "invalid_request", problem)
        sub = state.subscribe(body["target_url"], body["event_types"], body.get("filters"))
        return JSONResponse({"data": sub.public(with_secret=True), "meta": {"api_version": API_VERSION}}, 201)

    @app.get("/api/v1/webhooks")
    async def list_webhooks(request: Request) -> Response:
        await _before(state, request, SCOPE_WEBHOOKS)
        subs = [s.public() for s in state.subscriptions()]
        return JSONResponse(
            {"data": subs, "meta": {"api_version": API_VERSION, "total": len(subs), "count": len(subs)}}
        )

    @app.get("/api/v1/webhooks/{subscription_id}")
    async def get_webhook(subscription_id: str, request: Request) -> Response:
        await _before(state, request, SCOPE_WEBHOOKS)
        sub = state.subscription(subscription_id)
        if sub is None:
            return _error(404, "not_found", f"No webhook subscription {subscription_id!r}.")
        return JSONResponse({"data": sub.public(), "meta": {"api_version": API_VERSION}})

    @app.delete("/api/v1/webhooks/{subscription_id}")
    async def delete_webhook(subscription_id: str, request: Request) -> Response:
        await _before(state, request, SCOPE_WEBHOOKS)
        if not state.unsubscribe(subscription_id):
            return _error(404, "not_found", f"No webhook subscription {subscription_id!r}.")
        return Response(status_code=204)

    return app


def _subscription_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    url = body.get("target_url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return "target_url must be an http(s) URL."
    types = body.get("event_types")
    if not isinstance(types, list) or not types:
        return "event_types must be a non-empty list of event types."
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        return f"Unknown event type(s): {', '.join(map(str, unknown))}."
    if not isinstance(body.get("filters", {}), dict):
        return "filters must be an object."
    return None
