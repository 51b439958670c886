"""LeanData BookIt simulator: retrieve, reschedule and cancel meetings, in memory.

Written only from LeanData's published documents: the BookIt API OpenAPI file (the response
tables; https://bookit-api.leandata.com/) and LeanData's guides on managing and booking a meeting,
problem types, rate limits and authentication (https://docs.leandata.com). Booking (availability, create,
round robin) lives in `leandata_booking`; the control API in `leandata_control`.

Provider surface (``create_app``):

* ``GET /v1/meetings?prospectEmail=&start=&end=&status=`` → a JSON array, no pagination.
* ``GET /v1/meeting/{id}``, ``PATCH /v1/meeting/{id}`` (reschedule), ``DELETE /v1/meeting/{id}``
  (cancel; 200 with an empty body).
* Auth ``X-Api-Key``; missing or wrong → 401 ``{"message":"Unauthorized"}`` with
  ``x-amzn-ErrorType: UnauthorizedException``: the AWS API Gateway answers, not LeanData. Every
  response carries ``x-amzn-RequestId``, the only correlation handle the docs name.
* LeanData failures are ``{"error": <sentence>}``; "Validation Error:" prefixes input problems.

Ambiguities, and how they are resolved:

* Default time range: the OpenAPI description says both "from the time of the API call through
  the future" and "if no time filters are provided, all meetings ... will be returned". The
  simulator follows the first (the stricter one, so a client that forgets its lookback misses
  past meetings here too): without ``start`` only meetings starting at or after now are listed;
  ``end`` alone keeps that lower bound. Both bounds are inclusive and compare the scheduled start.
* ``start``/``end``: all digits → epoch milliseconds, otherwise ISO 8601 (no offset → UTC).
* Canceled meetings are listed (the docs: "returns scheduled and canceled meetings").
* ``prospectEmail`` matches case-insensitively (email addresses are, in practice).
* Response shape: the OpenAPI table's ``{"bookIt": {"status"}, "calendarEvent": {...}}`` by
  default; ``flat_shape`` switches to the manage-a-meeting note's ``{"id", "title", "status",
  "scheduledTime", "organizer_email", "attendees"}``.
* ``attendees[].organizer``/``self`` are "if provided by calendar provider": like Google
  Calendar, the simulator includes them only when true.
* ``bookIt.status``: ``scheduled`` when booked, ``rescheduled`` after a PATCH, ``canceled`` after
  DELETE; ``calendarEvent.status`` is ``confirmed`` or ``canceled``.
* Ids: opaque 52-character strings (base32hex, like Google Calendar event ids).
* Undocumented, guessed: PATCH of a canceled meeting → 400 ``{"error": "Meeting has already been
  canceled."}``; PATCH does not check availability; DELETE of a canceled meeting → 200 again
  ("DELETE is naturally idempotent"); 429 → ``{"message":"Too Many Requests"}`` and 500 →
  ``{"message":"Internal server error"}`` as the gateway sends them, without ``Retry-After``
  (LeanData documents no limit and no rate-limit header) unless a fault asks for one.
* A ``malformed`` fault appends one broken element to the listing: ``bad_start_time`` (default,
  ``start_time`` is ``"not-a-number"``) or ``missing_calendar_event`` (no ``calendarEvent``; in
  the flat shape, no ``scheduledTime``). A ``mutate`` fault fires after a listing is computed
  (``offset`` 0: there are no pages).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from bookingsync.sandbox.answer_faults import install_answer_faults
from bookingsync.sandbox.clock import utc_now
from bookingsync.sandbox.errors import UnknownMeetingError
from bookingsync.sandbox.faults import Fault, FaultQueue
from bookingsync.sandbox.request_log import CONTROL_PREFIX, RequestLog, install_request_log

LIST_PATH = "/v1/meetings"
DEFAULT_API_KEY = "ld_sandbox_api_key"
ID_LENGTH = 52
ID_ALPHABET = "0123456789abcdefghijklmnopqrstuv"
LIST_STATUSES = ("scheduled", "rescheduled", "canceled")
MALFORMED_VARIANTS = ("bad_start_time", "missing_calendar_event")
DEFAULT_HOSTS: tuple[dict[str, str], ...] = (
    {
        "id": "0058c00000SandAAA",
        "FirstName": "Riley",
        "LastName": "Host",
        "Email": "riley.host@sandbox-leandata.example",
        "TimeZoneSidKey": "America/Los_Angeles",
        "ConferenceLink": "https://zoom.us/j/1000000001",
    },
    {
        "id": "0058c00000SandBBB",
        "FirstName": "Sam",
        "LastName": "Pool",
        "Email": "sam.pool@sandbox-leandata.example",
        "TimeZoneSidKey": "Europe/Berlin",
        "ConferenceLink": "https://zoom.us/j/1000000002",
    },
)


def to_epoch_ms(value: datetime | int) -> int:
    if isinstance(value, int):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def parse_time_param(text: str) -> int:
    """Epoch milliseconds from all-digit text or an ISO 8601 timestamp."""
    if text.isdigit():
        return int(text)
    value = datetime.fromisoformat(text)
    return to_epoch_ms(value)


def new_meeting_id() -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


@dataclass(frozen=True)
class LeanDataMeeting:
    id: str
    title: str
    start_ms: int
    end_ms: int
    timezone: str
    prospect_email: str
    organizer_email: str
    guest_emails: tuple[str, ...]
    bookit_status: str
    host_user_id: str | None = None

    @property
    def calendar_status(self) -> str:
        return "canceled" if self.bookit_status == "canceled" else "confirmed"

    def attendees(self) -> list[dict[str, Any]]:
        organizer = {
            "email": self.organizer_email,
            "responseStatus": "accepted",
            "organizer": True,
            "self": True,
        }
        others = [
            {"email": e, "responseStatus": "needsAction"} for e in (self.prospect_email, *self.guest_emails)
        ]
        return [organizer, *others]

    def scheduled_time(self) -> dict[str, int]:
        return {"start_time": self.start_ms, "end_time": self.end_ms}

    def wire(self, *, flat: bool = False) -> dict[str, Any]:
        if flat:
            return {
                "id": self.id,
                "title": self.title,
                "status": self.calendar_status,
                "scheduledTime": self.scheduled_time(),
                "organizer_email": self.organizer_email,
                "attendees": self.attendees(),
            }
        return {
            "bookIt": {"status": self.bookit_status},
            "calendarEvent": {
                "id": self.id,
                "title": self.title,
                "status": self.calendar_status,
                "scheduledTime": self.scheduled_time(),
                "organizer": {"email": self.organizer_email},
                "attendees": self.attendees(),
            },
        }


class LeanDataState:
    """Everything the simulator holds; every method is safe to call from any thread."""

    def __init__(
        self,
        *,
        now: Callable[[], datetime] | None = None,
        api_keys: Iterable[str] = (DEFAULT_API_KEY,),
        flat_shape: bool = False,
        display_all_pool_availability: bool | None = False,
        hosts: Iterable[dict[str, str]] = DEFAULT_HOSTS,
    ) -> None:
        self.now = now or utc_now
        self.flat_shape = flat_shape
        self.display_all_pool_availability = display_all_pool_availability
        self.hosts = [dict(h) for h in hosts]
        self.faults = FaultQueue()
        self.requests = RequestLog()
        self._lock = threading.RLock()
        self._api_keys = set(api_keys)
        self._meetings: dict[str, LeanDataMeeting] = {}
        self.booking_tokens: dict[str, dict[str, Any]] = {}  # owned by leandata_booking

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def now_ms(self) -> int:
        return to_epoch_ms(self.now())

    def add_api_key(self, api_key: str) -> None:
        with self._lock:
            self._api_keys.add(api_key)

    def accepts(self, api_key: str | None) -> bool:
        with self._lock:
            return api_key is not None and api_key in self._api_keys

    def book(
        self,
        title: str,
        start: datetime | int,
        end: datetime | int,
        prospect_email: str,
        organizer_email: str | None = None,
        *,
        timezone: str = "UTC",
        guest_emails: Iterable[str] = (),
        status: str = "scheduled",
        host_user_id: str | None = None,
    ) -> str:
        with self._lock:
            meeting = LeanDataMeeting(
                id=new_meeting_id(),
                title=title,
                start_ms=to_epoch_ms(start),
                end_ms=to_epoch_ms(end),
                timezone=timezone,
                prospect_email=prospect_email,
                organizer_email=organizer_email or self.hosts[0]["Email"],
                guest_emails=tuple(guest_emails),
                bookit_status=status,
                host_user_id=host_user_id,
            )
            self._meetings[meeting.id] = meeting
            return meeting.id

    def reschedule(
        self, meeting_id: str, start: datetime | int, end: datetime | int, timezone: str | None = None
    ) -> LeanDataMeeting:
        with self._lock:
            meeting = self.get(meeting_id)
            meeting = replace(
                meeting,
                start_ms=to_epoch_ms(start),
                end_ms=to_epoch_ms(end),
                timezone=timezone or meeting.timezone,
                bookit_status="rescheduled",
            )
            self._meetings[meeting_id] = meeting
            return meeting

    def cancel(self, meeting_id: str) -> None:
        with self._lock:
            self._meetings[meeting_id] = replace(self.get(meeting_id), bookit_status="canceled")

    def remove(self, meeting_id: str) -> None:
        """Hard delete: the meeting vanishes from every answer, as if deleted at the calendar."""
        with self._lock:
            self.get(meeting_id)
            del self._meetings[meeting_id]

    def get(self, meeting_id: str) -> LeanDataMeeting:
        with self._lock:
            try:
                return self._meetings[meeting_id]
            except KeyError:
                raise UnknownMeetingError(meeting_id) from None

    def meetings(self) -> list[LeanDataMeeting]:
        with self._lock:
            return sorted(self._meetings.values(), key=lambda m: (m.start_ms, m.id))

    def list_for(
        self,
        prospect_email: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        status: str | None = None,
    ) -> list[LeanDataMeeting]:
        lower = start_ms if start_ms is not None else self.now_ms()
        wanted = prospect_email.lower()
        return [
            m
            for m in self.meetings()
            if m.prospect_email.lower() == wanted
            and m.start_ms >= lower
            and (end_ms is None or m.start_ms <= end_ms)
            and (status is None or m.bookit_status == status)
        ]

    def wire(self, meeting: LeanDataMeeting) -> dict[str, Any]:
        return meeting.wire(flat=self.flat_shape)

    def add_fault(self, fault: Fault) -> None:
        self.faults.add(fault)

    def after_listing(self, action: Callable[[], None]) -> None:
        """Run `action` once the next listing is computed, before it is sent."""
        self.faults.add(Fault(kind="mutate", offset=0, action=action, path=LIST_PATH))


# -- HTTP ---------------------------------------------------------------------------------------


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status)


def gateway_error(
    status: int, message: str, error_type: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"message": message}, status, headers={"x-amzn-ErrorType": error_type, **(headers or {})}
    )


class Refused(Exception):
    """Raised by a handler to answer with `response` at once."""

    def __init__(self, response: Response) -> None:
        self.response = response


async def before(state: LeanDataState, request: Request, *, listing: bool = False) -> Fault | None:
    """Gateway auth, then an injected fault; returns a fault the listing must still honour."""
    if not state.accepts(request.headers.get("x-api-key")):
        raise Refused(gateway_error(401, "Unauthorized", "UnauthorizedException"))
    fault = state.faults.take_before(request.method, request.url.path, listing=listing)
    if fault is None:
        return None
    if fault.kind == "delay":
        await asyncio.sleep(fault.seconds)
        return None
    if fault.kind == "429":
        extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        raise Refused(gateway_error(429, "Too Many Requests", "TooManyRequestsException", extra))
    if fault.kind == "500":
        raise Refused(gateway_error(500, "Internal server error", "InternalServerErrorException"))
    return fault


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
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise Refused(error(400, "Validation Error: The request body must be a JSON object."))
    return body


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


def create_app(state: LeanDataState) -> FastAPI:
    # Imported here: both modules build on this one's state, errors and auth.
    from bookingsync.sandbox.leandata_booking import booking_router
    from bookingsync.sandbox.leandata_control import control_router

    app = FastAPI(title="LeanData BookIt sandbox", openapi_url=None, docs_url=None, redoc_url=None)
    install_request_log(app, state.requests, state.now)
    install_answer_faults(app, state.faults)
    app.include_router(control_router(state))
    app.include_router(booking_router(state))

    @app.middleware("http")
    async def gateway_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        if not request.url.path.startswith(CONTROL_PREFIX):
            response.headers["x-amzn-RequestId"] = str(uuid.uuid4())
        return response

    @app.exception_handler(Refused)
    async def refused(_request: Request, exc: Refused) -> Response:
        return exc.response

    @app.get(LIST_PATH)
    async def list_meetings(request: Request) -> Response:
        fault = await before(state, request, listing=True)
        params = request.query_params
        email = params.get("prospectEmail")
        if not email:
            return error(400, "Validation Error: Missing required parameter: prospectEmail")
        bounds: dict[str, int | None] = {}
        for name in ("start", "end"):
            raw = params.get(name)
            try:
                bounds[name] = None if raw is None else parse_time_param(raw)
            except ValueError:
                return error(
                    400,
                    f"Validation Error: Invalid {name}: expected an ISO 8601 string or Unix milliseconds.",
                )
        status = params.get("status")
        if status is not None and status not in LIST_STATUSES:
            return error(
                400, f"Validation Error: Invalid status: allowed values are {', '.join(LIST_STATUSES)}."
            )
        found = state.list_for(email, bounds["start"], bounds["end"], status)
        body = [state.wire(m) for m in found]
        for mutation in state.faults.take_after_page(request.method, request.url.path, 0):
            assert mutation.action is not None  # Fault refuses a mutate without one
            mutation.action()
        if fault is not None and fault.kind == "malformed":
            body.append(_malformed(state, fault.variant))
        return JSONResponse(body)

    @app.get("/v1/meeting/{meeting_id}")
    async def get_meeting(meeting_id: str, request: Request) -> Response:
        await before(state, request)
        try:
            return JSONResponse(state.wire(state.get(meeting_id)))
        except UnknownMeetingError:
            return error(404, "Meeting not found")

    @app.patch("/v1/meeting/{meeting_id}")
    async def reschedule(meeting_id: str, request: Request) -> Response:
        await before(state, request)
        body = await json_body(request)
        start, end, timezone = scheduled_time(body, need_timezone=False)
        with state.lock:
            try:
                meeting = state.get(meeting_id)
            except UnknownMeetingError:
                return error(404, "Meeting not found")
            if meeting.bookit_status == "canceled":
                return error(400, "Meeting has already been canceled.")
            meeting = state.reschedule(meeting_id, start, end, timezone)
        return JSONResponse({"meetingId": meeting.id, "organizerEmail": meeting.organizer_email})

    @app.delete("/v1/meeting/{meeting_id}")
    async def cancel(meeting_id: str, request: Request) -> Response:
        await before(state, request)
        try:
            state.cancel(meeting_id)
        except UnknownMeetingError:
            return error(404, "Meeting not found")
        return Response(status_code=200)

    return app
