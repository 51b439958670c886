"""Meetergo's error envelope (``{"statusCode", "message", "error"}``), authorization (personal token
or platform key with the acting-user header, rate limit), injected faults, and the request readers
the routes share."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from bookingsync.sandbox.errors import UnknownMeetingError
from bookingsync.sandbox.faults import Fault
from bookingsync.sandbox.refusal import Refused, bearer_token, fault_before
from bookingsync.sandbox.refusal import json_object as json_object_or

from .records import (
    DEFAULT_USER_ID,
    MEETING_TYPE_ID,
    RATE_LIMIT_RETRY_AFTER_SECONDS,
    USER_ID_HEADER,
    MeetergoAppointment,
    MeetergoAttendee,
    MeetergoRefusal,
)
from .state import MeetergoState

ERROR_NAMES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    406: "Not Acceptable",
    429: "Too Many Requests",
    500: "Internal Server Error",
}


def error(
    status: int,
    message: str,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "statusCode": status,
        "message": message,
        "error": ERROR_NAMES.get(status, "Error"),
    }
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status, headers=headers)


def refusal_response(exc: MeetergoRefusal) -> JSONResponse:
    return error(exc.status, exc.message, exc.errors)


def rate_limited(retry_after: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return error(429, "Too Many Requests", headers=headers)


def authorize(state: MeetergoState, request: Request) -> str:
    """The acting user's id, or `Refused` with the documented 401/400/403/429."""
    header = request.headers.get("authorization")
    if not header:
        raise Refused(error(401, "Missing authorization header"))
    token = bearer_token(request)
    credential = state.credential(token) if token is not None else None
    if token is None or credential is None:
        raise Refused(error(401, "Invalid API key"))
    if credential.expires_at is not None and credential.expires_at <= state.now():
        raise Refused(error(401, "API key has expired"))
    if credential.platform:
        user_id = request.headers.get(USER_ID_HEADER, "").strip()
        if not user_id:
            raise Refused(
                error(400, "Missing required header 'x-meetergo-api-user-id' for API key authentication")
            )
        if state.user(user_id) is None:
            raise Refused(error(403, "User does not belong to this company"))
    else:
        user_id = credential.user_id or DEFAULT_USER_ID
    if not state.allow_request(token):
        raise Refused(rate_limited(RATE_LIMIT_RETRY_AFTER_SECONDS if state.retry_after_header else None))
    return user_id


async def before(
    state: MeetergoState, request: Request, *, listing: bool = False
) -> tuple[str, Fault | None]:
    """Authorize, then apply an injected fault; returns the acting user and a fault the
    listing must still honour."""
    user_id = authorize(state, request)
    return user_id, await fault_before(state.faults, request, _fault_response, listing=listing)


def _fault_response(fault: Fault) -> Response | None:
    if fault.kind == "429":
        return rate_limited(fault.retry_after)
    if fault.kind == "500":
        return JSONResponse({"statusCode": 500, "message": "Internal server error"}, 500)
    return None


async def json_object(request: Request) -> dict[str, Any]:
    return await json_object_or(
        request,
        lambda: error(
            400, "Validation failed", [{"field": "body", "message": "The body must be a JSON object"}]
        ),
    )


def int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int | None = None) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Refused(
            error(400, "Validation failed", [{"field": name, "message": f"{name} must be an integer number"}])
        ) from None
    if value < low:
        raise Refused(
            error(
                400, "Validation failed", [{"field": name, "message": f"{name} must not be less than {low}"}]
            )
        )
    if high is not None and value > high:
        raise Refused(
            error(
                400,
                "Validation failed",
                [{"field": name, "message": f"{name} must not be greater than {high}"}],
            )
        )
    return value


def _malformed(state: MeetergoState, variant: str | None) -> dict[str, Any]:
    stamp = state.now()
    record = state.appointment_resource(
        MeetergoAppointment(
            id=str(uuid.uuid4()),
            secret="malformed",
            meeting_type_id=MEETING_TYPE_ID,
            start=stamp,
            end=stamp,
            host_ids=(DEFAULT_USER_ID,),
            attendees=(MeetergoAttendee(email="broken@example.com"),),
            channel="zoom",
            location=None,
            meeting_link=None,
            title="Malformed record",
            description=None,
            created_at=stamp,
            updated_at=stamp,
        )
    )
    if (variant or "bad_start") == "missing_meeting_info":
        del record["meetingInfo"]
    else:
        record["meetingInfo"]["start"] = "not-a-date"
    return record


def _visible(state: MeetergoState, user_id: str, appointment_id: str) -> MeetergoAppointment:
    try:
        appt = state.get(appointment_id)
    except UnknownMeetingError:
        raise Refused(error(404, "Appointment not found")) from None
    if not state.visible_to(user_id)(appt):
        raise Refused(error(404, "Appointment not found"))
    return appt


async def _optional_object(request: Request) -> dict[str, Any]:
    if not (await request.body()).strip():
        return {}
    return await json_object(request)
