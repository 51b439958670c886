"""LeanData's two error envelopes (the API Gateway's ``{"message"}`` with ``x-amzn-ErrorType``, and
LeanData's own ``{"error"}``), the gateway's API-key check and injected faults, and the request-body
readers the manage and booking routes share."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from bookingsync.sandbox.faults import Fault
from bookingsync.sandbox.refusal import Refused, fault_before, json_object

from .state import LeanDataMeeting, LeanDataState, new_meeting_id


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status)


def gateway_error(
    status: int, message: str, error_type: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"message": message}, status, headers={"x-amzn-ErrorType": error_type, **(headers or {})}
    )


async def before(state: LeanDataState, request: Request, *, listing: bool = False) -> Fault | None:
    """Gateway auth, then an injected fault; returns a fault the listing must still honour."""
    if not state.accepts(request.headers.get("x-api-key")):
        raise Refused(gateway_error(401, "Unauthorized", "UnauthorizedException"))
    return await fault_before(state.faults, request, _fault_response, listing=listing)


def _fault_response(fault: Fault) -> Response | None:
    if fault.kind == "429":
        extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        return gateway_error(429, "Too Many Requests", "TooManyRequestsException", extra)
    if fault.kind == "500":
        return gateway_error(500, "Internal server error", "InternalServerErrorException")
    return None


def _malformed(state: LeanDataState, variant: str | None) -> dict[str, Any]:
    now = state.now_ms()
    record = LeanDataMeeting(
        id=new_meeting_id(),
        title="Malformed record",
        start_ms=now,
        end_ms=now,
        timezone="UTC",
        prospect_email="broken@example.com",
        organizer_email=state.hosts[0]["Email"],
        guest_emails=(),
        bookit_status="scheduled",
    ).wire(flat=state.flat_shape)
    if (variant or "bad_start_time") == "missing_calendar_event":
        record.pop("scheduledTime" if state.flat_shape else "calendarEvent")
    else:
        holder = record if state.flat_shape else record["calendarEvent"]
        holder["scheduledTime"]["start_time"] = "not-a-number"
    return record


async def json_body(request: Request) -> dict[str, Any]:
    return await json_object(
        request, lambda: error(400, "Validation Error: The request body must be a JSON object.")
    )


def scheduled_time(body: dict[str, Any], *, need_timezone: bool) -> tuple[int, int, str | None]:
    """``scheduledTime.start_time``/``end_time`` (epoch ms) and ``timezone`` from a body."""
    slot = body.get("scheduledTime")
    if not isinstance(slot, dict):
        raise Refused(error(400, "Validation Error: Missing required parameter: scheduledTime"))
    for name in ("start_time", "end_time", *(("timezone",) if need_timezone else ())):
        if name not in slot:
            raise Refused(error(400, f"Validation Error: Missing required parameter: scheduledTime.{name}"))
    start, end = slot["start_time"], slot["end_time"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
        raise Refused(
            error(400, "Validation Error: scheduledTime.start_time and end_time must be epoch milliseconds.")
        )
    if end <= start:
        raise Refused(error(400, "Validation Error: scheduledTime.end_time must be after start_time."))
    timezone = slot.get("timezone")
    return start, end, timezone if isinstance(timezone, str) else None
