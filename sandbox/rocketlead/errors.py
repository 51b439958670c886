"""RocketLead's error envelope (``{"statusCode", "message"}``), authorization by token scope,
injected faults, and the request readers the routes share (times, wall-time pairs, required keys)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from bookingsync.sandbox.faults import Fault
from bookingsync.sandbox.refusal import Refused, bearer_token, fault_before

from .records import (
    METHOD_SCOPES,
    SCOPE_ADMIN,
    SCOPE_LEVELS,
    TOKEN_PREFIX,
    UnknownRecordError,
    parse_time,
    slot_id,
    wall_readings,
)
from .state import RocketLeadState


def envelope(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"statusCode": status, "message": message}, status, headers=headers)


def invalid(message: str) -> Refused:
    return Refused(envelope(400, f"Validation failed: {message}"))


def authorize(state: RocketLeadState, request: Request) -> None:
    token = bearer_token(request)
    record = state.use_token(token) if token and token.startswith(TOKEN_PREFIX) else None
    if record is None:
        raise Refused(envelope(401, "Unauthorized"))
    needed = METHOD_SCOPES.get(request.method.upper(), SCOPE_ADMIN)
    if record.level < SCOPE_LEVELS[needed]:
        raise Refused(
            envelope(
                403,
                f"Forbidden: this API token lacks the {needed} scope "
                f"required for {request.method.upper()} requests.",
            )
        )


async def before(state: RocketLeadState, request: Request, *, listing: bool = False) -> Fault | None:
    """Auth, then an injected fault; returns a fault the availability answer must still honour."""
    authorize(state, request)
    return await fault_before(state.faults, request, _fault_response, listing=listing)


def _fault_response(fault: Fault) -> Response | None:
    if fault.kind == "429":
        extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        return envelope(429, "Too Many Requests", extra)
    if fault.kind == "500":
        return envelope(500, "Internal server error")
    return None


def _time_param(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise invalid(f"{name} must be an ISO-8601 string")
    try:
        return parse_time(value)
    except ValueError:
        raise invalid(f"{name} must be an ISO-8601 date-time with a UTC offset") from None


def _wall_pair(state: RocketLeadState, body: dict[str, Any]) -> tuple[datetime, datetime]:
    """Booking times in wall-time mode: a local time in a fold is the reading whose slot the
    body's ``resourceSlotId`` names; without one it is refused as ambiguous."""
    for name in ("startDateTime", "endDateTime"):
        if not isinstance(body[name], str):
            raise invalid(f"{name} must be an ISO-8601 string")
    calendar_id, resource_id = body["calendarId"], body.get("resourceId")
    wanted = body.get("resourceSlotId")
    try:
        zone = state.calendar(calendar_id).timezone
    except UnknownRecordError:
        raise Refused(envelope(404, "Calendar not found")) from None
    try:
        starts = (
            [parse_time(body["startDateTime"])]
            if _has_offset(body["startDateTime"])
            else wall_readings(body["startDateTime"], zone)
        )
        ends = (
            [parse_time(body["endDateTime"])]
            if _has_offset(body["endDateTime"])
            else wall_readings(body["endDateTime"], zone)
        )
    except ValueError:
        raise invalid("startDateTime and endDateTime must be ISO-8601 date-times") from None
    pairs = [(a, b) for a in starts for b in ends if b > a]
    if wanted and isinstance(resource_id, str):
        named = [p for p in pairs if slot_id(resource_id, *p) == wanted]
        pairs = named or pairs
    if len(pairs) != 1:
        raise invalid(
            "startDateTime names a local time that does not exist or occurs twice in the calendar's "
            "timezone; send an offset or the slot's resourceSlotId"
        )
    return pairs[0]


def _has_offset(text: str) -> bool:
    try:
        return datetime.fromisoformat(text).tzinfo is not None
    except ValueError:
        return False


def _required(source: Any, names: Iterable[str]) -> None:
    for name in names:
        value = source.get(name)
        if value is None or value == "":
            raise invalid(f"{name} is required")


def _malformed(slot: dict[str, Any], variant: str | None) -> dict[str, Any]:
    broken = dict(slot, resourceSlotId=str(uuid.uuid4()))
    if (variant or "bad_start_time") == "missing_available":
        del broken["available"]
    else:
        broken["startDateTime"] = "not-a-date"
    return broken


def _lookup(state: RocketLeadState, thing: Callable[[str], Any], record_id: str) -> dict[str, Any]:
    try:
        with state.lock:
            found = thing(record_id)
            return found if isinstance(found, dict) else found.wire()
    except UnknownRecordError as exc:
        raise Refused(envelope(404, exc.message)) from None
