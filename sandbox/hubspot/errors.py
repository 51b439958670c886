"""HubSpot's error envelope (the `Error` schema of the `default` response), authorization by
token and scope, and the query parameters every route reads the same way."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from bookingsync.sandbox.errors import SandboxError
from bookingsync.sandbox.faults import Fault
from bookingsync.sandbox.refusal import Refused, bearer_token, fault_before, json_object

from .records import (
    DAILY_LIMIT,
    RATE_LIMIT_INTERVAL_MS,
    RATE_LIMIT_MAX,
    HubSpotApiError,
    HubSpotMeeting,
    zone,
)
from .state import HubSpotState


def error_body(
    category: str,
    message: str,
    *,
    sub_category: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    context: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": "error",
        "message": message,
        "correlationId": str(uuid.uuid4()),
        "category": category,
    }
    if sub_category:
        body["subCategory"] = sub_category
    if errors:
        body["errors"] = errors
    if context:
        body["context"] = context
    return body


def _error(
    status: int, category: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse(error_body(category, message, **extra), status, headers=headers)


def _api_error(exc: HubSpotApiError) -> JSONResponse:
    return _error(
        exc.status,
        exc.category,
        exc.message,
        sub_category=exc.sub_category,
        errors=exc.errors,
        context=exc.context,
    )


def rate_limited(retry_after: int | None = None) -> JSONResponse:
    body = error_body("RATE_LIMITS", "You have reached your ten_secondly_rolling limit.")
    body |= {"errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"}
    headers = {
        "X-HubSpot-RateLimit-Interval-Milliseconds": str(RATE_LIMIT_INTERVAL_MS),
        "X-HubSpot-RateLimit-Max": str(RATE_LIMIT_MAX),
        "X-HubSpot-RateLimit-Remaining": "0",
        "X-HubSpot-RateLimit-Daily": str(DAILY_LIMIT),
        "X-HubSpot-RateLimit-Daily-Remaining": str(DAILY_LIMIT - 1),
    }
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return JSONResponse(body, 429, headers=headers)


def _validation(message: str, errors: list[dict[str, Any]] | None = None) -> Refused:
    return Refused(_error(400, "VALIDATION_ERROR", message, errors=errors))


def _authorize(state: HubSpotState, request: Request, scopes: tuple[str, ...]) -> None:
    token = bearer_token(request)
    granted = state.scopes_for(token) if token else None
    if token is None or granted is None:
        sent = request.headers.get("authorization", "").partition(" ")[2].strip()  # under any scheme
        message = (
            "Authentication credentials not found. This API supports OAuth 2.0 "
            "authentication and you can find more details at "
            "https://developers.hubspot.com/docs/methods/auth/oauth-overview"
            if not sent
            else "The access token provided is invalid or has expired."
        )
        raise Refused(_error(401, "INVALID_AUTHENTICATION", message))
    if not granted.intersection(scopes):
        raise Refused(
            _error(
                403,
                "MISSING_SCOPES",
                "This app hasn't been granted all required scopes to make this call.",
                errors=[
                    {
                        "message": "One or more of the following scopes are required.",
                        "context": {"requiredGranularScopes": list(scopes)},
                    }
                ],
            )
        )
    if not state.allow_request(token):
        raise Refused(rate_limited())


async def _before(state: HubSpotState, request: Request, *scopes: str, listing: bool = False) -> Fault | None:
    _authorize(state, request, scopes)
    return await fault_before(state.faults, request, _fault_response, listing=listing)


def _fault_response(fault: Fault) -> Response | None:
    if fault.kind == "429":
        return rate_limited(fault.retry_after)
    if fault.kind == "500":
        return _error(500, "INTERNAL_ERROR", "internal error")
    return None


def _multi(request: Request, name: str) -> list[str]:
    """A form/explode array parameter: repeated and/or comma separated."""
    return [p.strip() for raw in request.query_params.getlist(name) for p in raw.split(",") if p.strip()]


def _int_param(raw: Any, name: str, default: int, low: int, high: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        value = None
    if value is None or isinstance(raw, bool) or not low <= value <= high:
        raise _validation(
            f"{name} must be an integer between {low} and {high}; got {raw!r}.",
            [{"message": f"Invalid {name}.", "in": name}],
        )
    return value


def _bool_param(raw: str | None, name: str) -> bool:
    if raw is None:
        return False
    if raw.lower() not in ("true", "false"):
        raise _validation(f"{name} must be true or false; got {raw!r}.")
    return raw.lower() == "true"


def _tz_param(request: Request) -> str:
    name = request.query_params.get("timezone")
    if not name:
        raise _validation(
            "The timezone query parameter is required.",
            [{"message": "Missing required parameter.", "in": "timezone"}],
        )
    try:
        zone(name)
    except SandboxError:
        raise _validation(
            f"Unknown timezone {name!r}.", [{"message": "Invalid timezone.", "in": "timezone"}]
        ) from None
    return name


async def _json_object(request: Request) -> dict[str, Any]:
    return await json_object(
        request, lambda: _validation("Invalid input JSON: the request body must be a JSON object.").response
    )


def _malformed(state: HubSpotState) -> dict[str, Any]:
    stamp = state.now()
    meeting = HubSpotMeeting(
        "1", {"hs_meeting_title": "Malformed", "hs_meeting_start_time": "not-a-date"}, stamp, stamp
    )
    return meeting.resource(["hs_meeting_title", "hs_meeting_start_time"])


# Search ---------------------------------------------------------------------------------------
