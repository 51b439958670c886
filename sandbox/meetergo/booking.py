"""meetergo v4 booking: availability, ``POST /v4/booking``, provisional bookings.

Follows the "Bookings", "Create booking" (``seed-meetergo-v4-booking.md``), "Rescheduling" and
"Troubleshooting" excerpts.

* ``GET /v4/booking-availability?meetingTypeId=&start=YYYY-MM-DD&end=YYYY-MM-DD`` (+
  ``existingAppointmentId``, ``duration``, ``troubleshoot``) → ``{"availableSlots": [{"start",
  "end", "hostIds"}]}``.
* ``POST /v4/booking`` → 201 ``{"appointmentId", "secret", "attendeeEmail"}``, or for a meeting
  type with double opt-in / host confirmation 201 ``{"bookingType", "provisionalBookingId",
  "attendeeEmail"}``; 400 ``"Slot no longer available"`` when the slot is gone.
* ``GET /v4/provisional-booking/paginated?page=&pageSize=&status=&meetingTypeId=&userId=`` →
  ``{"provisionalBookings": [...], "total"}``.

Ambiguities, and how they are resolved:

* Slot shape (the docs only name ``availableSlots``; guess): ``{"start", "end", "hostIds"}``,
  UTC with ``Z``. Slots lie on a grid of the meeting type's default duration from
  ``day_start_hour`` to ``day_end_hour`` in its zone, on weekdays, at least
  ``min_notice_minutes`` after now; a slot is listed when one of its hosts is free. ``start``
  and ``end`` are both inclusive dates, at most `MAX_RANGE_DAYS` apart. ``troubleshoot=true``
  adds ``blockedSlots: [{"start", "end", "hostId", "reason"}]`` (names guessed).
* External calendar events "may take a few minutes to sync": availability ignores busy blocks
  younger than ``calendar_sync_lag_seconds`` (default 0), booking never does, so a slot can be
  offered and then answer "Slot no longer available".
* ``bookingType``: the API reference's enum spells ``doubleOptIn``/``requireHostConfirmation``
  (the default); the core-concepts guide shows ``"DoubleOptIn"``. ``booking_type_style``
  ``"guide"`` switches to ``DoubleOptIn``/``RequireHostConfirmation``. A provisional answer has
  no ``appointmentId`` or ``secret`` ("Undefined if DOI flow and not confirmed yet").
* A pending provisional booking holds its slot until confirmed, declined or expired
  (``provisional_ttl_hours`` after it was made, default 24). A booking with
  ``rescheduledFromId`` never goes provisional.
* Validation (guesses in class-validator style): every problem is listed in ``errors``; unknown
  body properties are refused ("property X should not exist") while ``reject_unknown_fields``
  is on; ``start`` needs an explicit offset or ``Z``; the attendee needs ``fullname`` or both
  ``firstname`` and ``lastname``; ``receiveReminders`` (boolean) and ``notes`` (object) are
  required; ``bringalongEmails`` holds at most 5 addresses; ``duration`` must be the default or
  an allowed duration; ``queueId`` is required for a round-robin meeting type and must be
  absent otherwise, where ``hostIds`` is required. An unknown meeting type → 404 "Meeting type
  not found". ``appointmentId`` in the body is accepted and ignored (undocumented meaning);
  ``rescheduledFromId`` (the guide's) books a successor (see the package's docstring).
* ``ignoreAvailability: true`` skips the slot checks (documented for the instant booker).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from bookingsync.sandbox.refusal import Refused

from .errors import before, error, int_param, json_object
from .records import (
    EMAIL_PATTERN,
    PROVISIONAL_LIST_PATH,
    PROVISIONAL_STATUSES,
    MeetergoAttendee,
    MeetergoRefusal,
    format_utc,
)
from .state import MeetergoState

MAX_RANGE_DAYS = 31
MAX_BRINGALONG = 5
CHANNELS = (
    "local",
    "local-attendee",
    "google",
    "zoom",
    "phone",
    "phone-incoming",
    "whatsapp",
    "connect",
    "webex",
    "whereby",
    "kmeet",
    "jitsi",
    "zava",
    "teamsForBusiness2",
    "custom",
    "resource",
)
BOOKING_FIELDS = frozenset(
    "attendee meetingTypeId start hostIds appointmentId location queueId channel duration "
    "routingFormId ignoreAvailability attendeePendingId paymentId resourceChannelIds "
    "oneTimeLinkId skipNotifications icsTitle icsDescription rescheduledFromId".split()
)
ATTENDEE_FIELDS = frozenset(
    "email receiveReminders notes firstname lastname fullname bringalongEmails phone language "
    "timezone dataPolicyAccepted".split()
)


def _invalid(errors: list[dict[str, str]]) -> Refused:
    return Refused(error(400, "Validation failed", errors))


def parse_offset_time(value: Any, name: str) -> datetime:
    """An ISO 8601 timestamp with an explicit offset (or ``Z``), else a validation 400."""
    problem = f"{name} must be a valid ISO 8601 date string with a time zone offset"
    if not isinstance(value, str):
        raise _invalid([{"field": name, "message": problem}])
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _invalid([{"field": name, "message": problem}]) from None
    if parsed.tzinfo is None:
        raise _invalid([{"field": name, "message": problem}])
    return parsed


def _date_param(raw: str | None, name: str) -> date:
    if raw is None:
        raise _invalid([{"field": name, "message": f"{name} should not be empty"}])
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise _invalid([{"field": name, "message": f"{name} must be a date (YYYY-MM-DD)"}]) from None


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _attendee(raw: Any, errors: list[dict[str, str]], strict: bool) -> MeetergoAttendee | None:
    if not isinstance(raw, dict):
        errors.append({"field": "attendee", "message": "attendee must be an object"})
        return None
    before_count = len(errors)
    if strict:
        for name in sorted(set(raw) - ATTENDEE_FIELDS):
            errors.append({"field": f"attendee.{name}", "message": f"property {name} should not exist"})
    email = raw.get("email")
    if not _is_str(email) or not EMAIL_PATTERN.match(email):
        errors.append({"field": "attendee.email", "message": "Invalid email format"})
    if not isinstance(raw.get("receiveReminders"), bool):
        errors.append(
            {"field": "attendee.receiveReminders", "message": "receiveReminders must be a boolean value"}
        )
    if not isinstance(raw.get("notes"), dict):
        errors.append({"field": "attendee.notes", "message": "notes must be an object"})
    for name in ("firstname", "lastname", "fullname", "phone", "language", "timezone"):
        if raw.get(name) is not None and not _is_str(raw[name]):
            errors.append({"field": f"attendee.{name}", "message": f"{name} must be a string"})
    fullname, first, last = raw.get("fullname"), raw.get("firstname"), raw.get("lastname")
    if not (fullname and _is_str(fullname)) and not (first and last):
        errors.append(
            {"field": "attendee.fullname", "message": "fullname, or firstname and lastname, must be provided"}
        )
    timezone = raw.get("timezone")
    if _is_str(timezone):
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            errors.append(
                {"field": "attendee.timezone", "message": "timezone must be a valid IANA time zone"}
            )
    guests = raw.get("bringalongEmails", [])
    if not isinstance(guests, list) or not all(_is_str(g) and EMAIL_PATTERN.match(g) for g in guests):
        errors.append(
            {
                "field": "attendee.bringalongEmails",
                "message": "each value in bringalongEmails must be an email",
            }
        )
    elif len(guests) > MAX_BRINGALONG:
        errors.append(
            {
                "field": "attendee.bringalongEmails",
                "message": f"bringalongEmails must contain no more than {MAX_BRINGALONG} elements",
            }
        )
    if len(errors) > before_count:
        return None
    return MeetergoAttendee(
        email=email,
        firstname=first,
        lastname=last,
        fullname=fullname,
        phone=raw.get("phone"),
        timezone=timezone,
        language=raw.get("language") or "en",
        receive_reminders=raw["receiveReminders"],
        notes=dict(raw["notes"]),
        bringalong_emails=tuple(guests),
    )


def _check_booking(body: dict[str, Any], strict: bool) -> tuple[MeetergoAttendee, datetime]:
    errors: list[dict[str, str]] = []
    if strict:
        for name in sorted(set(body) - BOOKING_FIELDS):
            errors.append({"field": name, "message": f"property {name} should not exist"})
    if not _is_str(body.get("meetingTypeId")) or not body["meetingTypeId"]:
        errors.append({"field": "meetingTypeId", "message": "meetingTypeId must be a string"})
    start: datetime | None = None
    try:
        start = parse_offset_time(body.get("start"), "start")
    except Refused:
        errors.append(
            {
                "field": "start",
                "message": "start must be a valid ISO 8601 date string with a time zone offset",
            }
        )
    attendee = _attendee(body.get("attendee"), errors, strict)
    hosts = body.get("hostIds")
    if hosts is not None and (not isinstance(hosts, list) or not all(_is_str(h) for h in hosts)):
        errors.append({"field": "hostIds", "message": "each value in hostIds must be a string"})
    for name in ("queueId", "location", "rescheduledFromId", "appointmentId"):
        if body.get(name) is not None and not _is_str(body[name]):
            errors.append({"field": name, "message": f"{name} must be a string"})
    channel = body.get("channel")
    if channel is not None and channel not in CHANNELS:
        errors.append(
            {
                "field": "channel",
                "message": f"channel must be one of the following values: {', '.join(CHANNELS)}",
            }
        )
    duration = body.get("duration")
    if duration is not None and (
        isinstance(duration, bool) or not isinstance(duration, int | float) or duration <= 0
    ):
        errors.append({"field": "duration", "message": "duration must be a positive number"})
    for name, limit in (("icsTitle", 200), ("icsDescription", 2000)):
        value = body.get(name)
        if value is not None and (not _is_str(value) or len(value) > limit):
            errors.append(
                {"field": name, "message": f"{name} must be shorter than or equal to {limit} characters"}
            )
    for name in ("ignoreAvailability", "skipNotifications"):
        if body.get(name) is not None and not isinstance(body[name], bool):
            errors.append({"field": name, "message": f"{name} must be a boolean value"})
    if errors:
        raise _invalid(errors)
    assert attendee is not None and start is not None
    return attendee, start


def booking_router(state: MeetergoState) -> APIRouter:
    router = APIRouter()

    @router.get("/v4/booking-availability")
    async def availability(request: Request) -> Response:
        await before(state, request)
        params = request.query_params
        meeting_type_id = params.get("meetingTypeId")
        if not meeting_type_id:
            raise _invalid([{"field": "meetingTypeId", "message": "meetingTypeId should not be empty"}])
        first, last = _date_param(params.get("start"), "start"), _date_param(params.get("end"), "end")
        if last < first:
            raise _invalid([{"field": "end", "message": "end must not be before start"}])
        if (last - first).days > MAX_RANGE_DAYS:
            raise _invalid(
                [{"field": "end", "message": f"end must be at most {MAX_RANGE_DAYS} days after start"}]
            )
        mt = state.meeting_type(meeting_type_id)
        if mt is None:
            return error(404, "Meeting type not found")
        duration = int_param(params, "duration", mt.duration, 1)
        if duration not in mt.durations():
            raise _invalid(
                [{"field": "duration", "message": f"duration must be one of {list(mt.durations())}"}]
            )
        existing = params.get("existingAppointmentId")
        if existing is not None:
            try:
                state.get(existing)
            except KeyError:
                return error(404, "Appointment not found")
        slots, blocked = state.scan_slots(
            meeting_type_id, first, last, duration=duration, ignore_appointment=existing
        )
        answer: dict[str, Any] = {
            "availableSlots": [
                {"start": format_utc(s.start), "end": format_utc(s.end), "hostIds": list(s.host_ids)}
                for s in slots
            ]
        }
        if (params.get("troubleshoot") or "").lower() == "true":
            answer["blockedSlots"] = [
                {"start": format_utc(start), "end": format_utc(end), "hostId": host, "reason": reason}
                for start, end, host, reason in blocked
            ]
        return JSONResponse(answer)

    @router.post("/v4/booking")
    async def book(request: Request) -> Response:
        user_id, _ = await before(state, request)
        body = await json_object(request)
        attendee, start = _check_booking(body, state.reject_unknown_fields)
        duration = body.get("duration")
        result = state.book(
            body["meetingTypeId"],
            start,
            attendee,
            host_ids=body.get("hostIds") or (),
            queue_id=body.get("queueId"),
            duration=int(duration) if duration is not None else None,
            channel=body.get("channel"),
            location=body.get("location"),
            title=body.get("icsTitle"),
            description=body.get("icsDescription"),
            ignore_availability=bool(body.get("ignoreAvailability")),
            rescheduled_from_id=body.get("rescheduledFromId"),
            acting_user_id=user_id,
        )
        if result.provisional is not None:
            prov = result.provisional
            return JSONResponse(
                {
                    "bookingType": state.booking_type_name(prov.booking_type),
                    "provisionalBookingId": prov.id,
                    "attendeeEmail": attendee.email,
                },
                201,
            )
        assert result.appointment is not None
        return JSONResponse(
            {
                "appointmentId": result.appointment.id,
                "secret": result.appointment.secret,
                "attendeeEmail": attendee.email,
            },
            201,
        )

    @router.get(PROVISIONAL_LIST_PATH)
    async def list_provisional(request: Request) -> Response:
        user_id, _ = await before(state, request)
        params = request.query_params
        page = int_param(params, "page", 0, 0)
        page_size = int_param(params, "pageSize", 10, 1, 100)
        status = params.get("status")
        if status is not None and status not in PROVISIONAL_STATUSES:
            allowed = ", ".join(PROVISIONAL_STATUSES)
            raise _invalid(
                [{"field": "status", "message": f"status must be one of the following values: {allowed}"}]
            )
        user = state.user(user_id)
        admin = user is not None and user.role == "admin"
        wanted_user = params.get("userId")
        if (wanted_user or params.get("companyId")) and not admin:
            raise MeetergoRefusal(403, "Forbidden resource")
        now = state.now()
        matching = [
            p
            for p in state.provisional_bookings()
            if (admin or user_id in p.host_ids)
            and (wanted_user is None or wanted_user in p.host_ids)
            and (status is None or p.status_at(now) == status)
            and (params.get("meetingTypeId") in (None, p.meeting_type_id))
        ]
        chunk = matching[page * page_size : (page + 1) * page_size]
        return JSONResponse(
            {"provisionalBookings": [state.provisional_resource(p) for p in chunk], "total": len(matching)}
        )

    return router
