"""RocketLead Connect API simulator: lookups, availability, book and hard-delete, in memory.

Written only from RocketLead's developer documentation
(https://docs.rocketlead.io/developers/connect-api/), the Bookings page above all (its response schema runs to
the end: ``id``, ``name``, ``createdAt``, ``startDateTime``, ``endDateTime`` ... are documented
fields, not guesses). The control API lives in `rocketlead_control`.

Provider surface (``create_app``), every path also answering without its trailing ``/``:

* ``GET /connect/calendar/``, ``/connect/calendar/{id}``; ``GET /connect/resources/``,
  ``/connect/resources/{id}``; ``GET /connect/appointment_types/``,
  ``/connect/appointment_types/{id}``;
  ``GET /connect/tables/``, ``/connect/tables/{id}`` (the docs' quick-start call).
* ``GET /connect/availability/?calendarId&appointmentTypeId&resourceId?&start&end
  &includeUnavailable?&stepLength?`` → ``{"data": [slot, ...], "meta": {...}}``.
* ``POST /connect/calendar_bookings/`` → 201 with the booking object;
  ``DELETE /connect/calendar_bookings/{id}`` → 204, a hard delete.
* Auth ``Authorization: Bearer rocketlead_...``; scope ``read`` for GET/HEAD/OPTIONS, ``write``
  for POST/PATCH/PUT, ``admin`` for DELETE. Errors are ``{"statusCode": n, "message": "..."}``.

Ambiguities, and how they are resolved:

* Scopes are a ladder, as the docs' table reads ("All read + ...", "All write + ..."): a token's
  strongest scope decides. A mismatch → 403 ``"Forbidden: this API token lacks the <scope> scope
  required for <METHOD> requests."``. Every 401 (missing header, not ``Bearer``, a token not
  starting with ``rocketlead_``, unknown, revoked or expired) is ``{"statusCode": 401, "message":
  "Unauthorized"}``. A token's ``last_used_at`` is stamped on each authenticated request.
* Routing comes before auth (as in a NestJS app): an unknown path or an undocumented method
  answers 404 ``"Cannot <METHOD> <path>"`` even without a token. Every GET also answers HEAD
  (read scope, no body); OPTIONS routes nothing, so it is a 404 too. In particular there is no
  ``GET /connect/calendar_bookings/`` (no list endpoint is documented) and no ``PATCH`` of a
  booking; bookings are visible through the control API only.
* Lookup lists are plain JSON arrays (not documented; the objects are "Record<string, unknown>").
  Calendars carry their IANA zone as ``timezone``; lengths and buffers are minutes.
* Times go out as JavaScript ``toISOString()`` would write them: UTC, milliseconds, ``Z``. Times
  coming in (``start``/``end``, ``startDateTime``/``endDateTime``) must be ISO 8601 date-times
  *with* an offset; a naive or date-only value is a 400 (the strict reading: a naive time is
  ambiguous against the calendar's zone).
* ``wall_times`` (a setting, off by default): the other reading of "calendars carry IANA tzdata
  — read this for any local-time math". Slot and booking times go out as local wall times of
  the calendar's zone without an offset (``2027-10-31T02:00:00.000``; the repeated hour of an
  autumn change appears twice, in time order), and a booking may send them back that way: a
  local time in a fold is the reading whose slot its ``resourceSlotId`` names, and without
  one (or for a time in a gap) the booking is a 400.
* Availability: candidate starts lie on a grid of ``stepLength`` minutes (default
  ``state.step_minutes``, 30) counted from local midnight in the calendar's zone on the day of
  ``start``; a slot is ``bookingLength`` long and must fit inside ``[start, end]``. Slots starting
  before now are not returned. Without ``resourceId`` every resource mapped to both the calendar
  and the appointment type is offered, one slot per resource and start; slots are ordered by start,
  then resource name. ``currentBookings`` counts the resource's bookings overlapping the slot
  (both widened by ``bufferAfter``); ``available`` is ``currentBookings < maxParallelBookings``.
  The range may span at most 31 days; ``stepLength`` is an integer 5..1440.
* ``includeUnavailable``: the docs say full slots come back regardless, and tell clients to filter
  ``available: true`` themselves. So by default it is validated (``true``/``false``) and ignored:
  full slots always come back. ``state.include_unavailable_filters = True`` switches to the
  other reading, where ``includeUnavailable=false`` drops full slots.
* ``resourceSlotId`` is an opaque UUID naming one slot instance (resource, start, end); it is
  stable across fetches. A booking that sends one must send the matching times and resource.
* Booking validation, in order: a JSON object; ``calendarId``, ``startDateTime``,
  ``endDateTime``, ``resourceId``, ``appointmentTypeId`` required ("Validation failed: <field> is
  required"; the org is a resource-planner org, so the last two are required); string fields must
  be strings; times must parse; end after start; ``entryId``/``tableEntryId`` (both accepted,
  they must agree) optional. Unknown calendar, resource, appointment type or table entry → 404
  ``"<Thing> not found"``. The resource must be mapped to the calendar and the appointment type;
  the length must equal ``bookingLength`` (``dynamicLength`` is always false here); a sent
  ``resourceSlotId`` must match. Then, under the state's lock (the "transactional recheck"): a
  slot starting before now, or one already at ``maxParallelBookings``, → 400 ``"The selected time
  slot is no longer available"``. Unknown body fields are ignored; the legacy ``scheduleTypeId``
  / ``scheduleTypeSlotId`` are echoed as ``calendarScheduleTypeId`` / ``...SlotId`` and otherwise
  ignored. Off-grid starts are accepted (the grid only shapes what availability offers).
* Create answers 201 (undocumented; a client should accept any 2xx). Optional response fields are
  omitted when empty rather than sent as null; ``name`` is echoed only when sent. A linked lead
  adds ``tableEntryId``, ``tableId``, ``tableEntryData`` (``{fieldKey: {"value": v}}``, a
  guess), ``tableSchemaFields``, ``leadStateName`` and ``leadStateColor``.
* Delete is hard: the booking is gone, a second DELETE (or any unknown id) → 404 ``"Calendar
  booking not found"``; 204 with no body on success, as documented.
* RocketLead documents no rate-limit shape: an injected 429 answers ``{"statusCode": 429,
  "message": "Too Many Requests"}`` (a guess), with ``Retry-After`` only when the fault sets one.
  An injected 500 answers ``{"statusCode": 500, "message": "Internal server error"}``. Faults match
  the path exactly as the client sent it (documented paths end with ``/``).
* The availability response is the one "listing": a ``malformed`` fault appends one broken slot
  (``variant`` ``bad_start_time`` (default): ``startDateTime`` is ``"not-a-date"``;
  ``missing_available``: no ``available`` key), and a ``mutate`` fault (``offset`` 0) runs after
  the slots are computed, before they are sent: the classic fetch-then-someone-books race.
* Slot races (`race_next_booking`): the next booking POST matching the race first has its slot
  filled to capacity by bookings with ``source="form_widget"`` (someone booked through the form),
  so the transactional recheck answers the documented 400. The competing bookings stay, as they
  would. The flow events of the docs (booked / hasStarted / hasEnded / deleted) run inside
  RocketLead and reach no third party: the simulator does not model them.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from bookingsync.sandbox.answer_faults import install_answer_faults
from bookingsync.sandbox.clock import utc_now
from bookingsync.sandbox.errors import SandboxError, UnknownMeetingError
from bookingsync.sandbox.faults import Fault, FaultQueue
from bookingsync.sandbox.request_log import CONTROL_PREFIX, RequestLog, install_request_log

TOKEN_PREFIX = "rocketlead_"
# A fixed, well-formed live token: rocketlead_live_<64 hex>, all three scopes.
DEFAULT_TOKEN = "rocketlead_live_" + hashlib.sha256(b"bookingsync rocketlead sandbox").hexdigest()
SCOPE_READ, SCOPE_WRITE, SCOPE_ADMIN = "read", "write", "admin"
SCOPE_LEVELS = {SCOPE_READ: 1, SCOPE_WRITE: 2, SCOPE_ADMIN: 3}
METHOD_SCOPES = {
    "GET": SCOPE_READ,
    "HEAD": SCOPE_READ,
    "OPTIONS": SCOPE_READ,
    "POST": SCOPE_WRITE,
    "PATCH": SCOPE_WRITE,
    "PUT": SCOPE_WRITE,
    "DELETE": SCOPE_ADMIN,
}

AVAILABILITY_PATH = "/connect/availability/"
BOOKINGS_PATH = "/connect/calendar_bookings/"
NOT_AVAILABLE = "The selected time slot is no longer available"
MAX_RANGE = timedelta(days=31)
MIN_STEP_MINUTES, MAX_STEP_MINUTES = 5, 1440
MALFORMED_VARIANTS = ("bad_start_time", "missing_available")
SOURCE_API, SOURCE_FORM = "connect_api", "form_widget"

ORGANIZATION_ID = "5f0c6a1e-3b7d-4c29-9e81-2a4d6b8f0c13"
DEFAULT_CALENDAR_ID = "c2a9e6f4-1d3b-4a57-8c90-6e2f4b1a7d35"
DEFAULT_RESOURCE_IDS = ("a7d13f52-9c4e-4b8a-b061-3f5e2c9d8a71", "b91e4c07-2f6a-4d3b-8e15-7c0a9d4f2b86")
DEFAULT_APPOINTMENT_TYPE_ID = "e4b7c2d9-6a1f-4e38-9d52-1b8c3f7a0e64"
DEFAULT_TABLE_ID = "f3c8a1b6-4e2d-4f79-a053-9d6b1e2c8f40"
LEAD_STATES = (
    {"id": "0a1b2c3d-0000-4000-8000-000000000001", "name": "New", "color": "#3b82f6"},
    {"id": "0a1b2c3d-0000-4000-8000-000000000002", "name": "Meeting booked", "color": "#22c55e"},
)
SCHEMA_FIELDS: dict[str, dict[str, Any]] = {
    "firstName": {
        "friendlyName": "First name",
        "type": "string",
        "specialType": "firstName",
        "primaryOfSpecialType": True,
    },
    "lastName": {
        "friendlyName": "Last name",
        "type": "string",
        "specialType": "lastName",
        "primaryOfSpecialType": True,
    },
    "email": {
        "friendlyName": "E-mail",
        "type": "string",
        "specialType": "email",
        "primaryOfSpecialType": True,
    },
    "phone": {
        "friendlyName": "Phone",
        "type": "string",
        "specialType": "phone",
        "primaryOfSpecialType": True,
    },
}
SLOT_NAMESPACE = uuid.UUID("6b1f0e2a-8d4c-4c3e-9a7b-2e5d1f0c9b84")


def format_time(value: datetime) -> str:
    """As JavaScript's ``Date.prototype.toISOString``: UTC, milliseconds, ``Z``."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def format_wall(value: datetime, zone: str) -> str:
    """A local wall time in `zone`, no offset, milliseconds: how a calendar UI writes a slot."""
    local = value.astimezone(ZoneInfo(zone))
    return local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}"


def wall_readings(text: str, zone: str) -> list[datetime]:
    """The UTC instants a local time without offset names in `zone`: two in a fold, none in a gap."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is not None or "T" not in text.upper():
        raise ValueError(f"{text!r} is not a local date-time")
    found: list[datetime] = []
    for fold in (0, 1):
        instant = value.replace(tzinfo=ZoneInfo(zone), fold=fold).astimezone(UTC)
        if instant.astimezone(ZoneInfo(zone)).replace(tzinfo=None) == value and instant not in found:
            found.append(instant)
    return found


def parse_time(text: str) -> datetime:
    """An ISO 8601 date-time with an offset; anything else raises ValueError."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None or "T" not in text.upper():
        raise ValueError(f"{text!r} has no UTC offset")
    return value.astimezone(UTC)


def aware(value: datetime) -> datetime:
    """Naive datetimes (from Python or the control API) are read as UTC."""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def slot_id(resource_id: str, start: datetime, end: datetime) -> str:
    return str(uuid.uuid5(SLOT_NAMESPACE, f"{resource_id}|{format_time(start)}|{format_time(end)}"))


class UnknownRecordError(UnknownMeetingError):
    """A lookup, lead or booking the sandbox does not hold; ``message`` is the provider's 404."""

    def __init__(self, kind: str, record_id: str) -> None:
        super().__init__(record_id)
        self.kind = kind

    @property
    def message(self) -> str:
        return f"{self.kind} not found"

    def __str__(self) -> str:
        return f"The sandbox holds no {self.kind.lower()} with id {self.meeting_id!r}."


class BookingValidationError(SandboxError, ValueError):
    """A booking RocketLead would refuse with 400 ``Validation failed: ...``."""


class SlotUnavailableError(SandboxError):
    def __str__(self) -> str:
        return NOT_AVAILABLE


@dataclass(frozen=True)
class Calendar:
    id: str
    name: str
    timezone: str
    created_at: datetime

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "organizationId": ORGANIZATION_ID,
            "name": self.name,
            "timezone": self.timezone,
            "createdAt": format_time(self.created_at),
        }


@dataclass(frozen=True)
class Resource:
    id: str
    name: str
    color: str
    max_parallel_bookings: int
    calendar_ids: tuple[str, ...]

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "organizationId": ORGANIZATION_ID,
            "name": self.name,
            "color": self.color,
            "maxParallelBookings": self.max_parallel_bookings,
        }


@dataclass(frozen=True)
class AppointmentType:
    id: str
    name: str
    booking_length: int  # minutes
    search_length: int  # minutes
    buffer_after: int  # minutes
    resource_ids: tuple[str, ...]
    dynamic_length: bool = False

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "organizationId": ORGANIZATION_ID,
            "name": self.name,
            "bookingLength": self.booking_length,
            "searchLength": self.search_length,
            "bufferAfter": self.buffer_after,
            "dynamicLength": self.dynamic_length,
        }


@dataclass(frozen=True)
class Lead:
    id: str
    table_id: str
    data: dict[str, Any]
    lead_state_id: str
    created_at: datetime

    def wire(self) -> dict[str, Any]:
        stamp = format_time(self.created_at)
        return {
            "tableId": self.table_id,
            "id": self.id,
            "organizationId": ORGANIZATION_ID,
            "archived": False,
            "createdAt": stamp,
            "updatedAt": stamp,
            "data": {k: {"value": v} for k, v in self.data.items()},
            "leadStateId": self.lead_state_id,
        }


@dataclass(frozen=True)
class Booking:
    id: str
    calendar_id: str
    resource_id: str
    appointment_type_id: str
    start: datetime
    end: datetime
    created_at: datetime
    name: str | None = None
    table_entry_id: str | None = None
    schedule_type_id: str | None = None
    schedule_type_slot_id: str | None = None
    source: str = SOURCE_API

    @property
    def resource_slot_id(self) -> str:
        return slot_id(self.resource_id, self.start, self.end)


@dataclass(frozen=True)
class Slot:
    resource: Resource
    appointment_type_id: str
    start: datetime
    end: datetime
    current_bookings: int

    @property
    def available(self) -> bool:
        return self.current_bookings < self.resource.max_parallel_bookings

    def wire(self, fmt: Callable[[datetime], str] = format_time) -> dict[str, Any]:
        return {
            "resourceId": self.resource.id,
            "resourceName": self.resource.name,
            "resourceColor": self.resource.color,
            "resourceSlotId": slot_id(self.resource.id, self.start, self.end),
            "appointmentTypeId": self.appointment_type_id,
            "startDateTime": fmt(self.start),
            "endDateTime": fmt(self.end),
            "maxParallelBookings": self.resource.max_parallel_bookings,
            "currentBookings": self.current_bookings,
            "available": self.available,
        }


@dataclass
class Race:
    """The next booking POST matching this finds its slot filled through the form widget."""

    start: datetime | None = None
    resource_id: str | None = None
    times: int = 1

    def matches(self, resource_id: str, start: datetime) -> bool:
        return (self.start is None or self.start == start) and (
            self.resource_id is None or self.resource_id == resource_id
        )

    def public(self) -> dict[str, Any]:
        return {
            "start": format_time(self.start) if self.start else None,
            "resource_id": self.resource_id,
            "times": self.times,
        }


@dataclass
class Token:
    scopes: frozenset[str]
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked: bool = False

    @property
    def level(self) -> int:
        return max((SCOPE_LEVELS[s] for s in self.scopes), default=0)


@dataclass
class _Catalog:
    calendars: dict[str, Calendar] = field(default_factory=dict)
    resources: dict[str, Resource] = field(default_factory=dict)
    appointment_types: dict[str, AppointmentType] = field(default_factory=dict)


class RocketLeadState:
    """Everything the simulator holds; every method is safe to call from any thread."""

    def __init__(
        self,
        *,
        now: Callable[[], datetime] | None = None,
        tokens: dict[str, Iterable[str]] | None = None,
        timezone: str = "Europe/Berlin",
        step_minutes: int = 30,
        booking_length: int = 30,
        max_parallel_bookings: int = 1,
        include_unavailable_filters: bool = False,
    ) -> None:
        self.now = now or utc_now
        self.step_minutes = step_minutes
        self.include_unavailable_filters = include_unavailable_filters
        # Write slot and booking times as local wall times of the calendar's zone, without an
        # offset (the repeated hour of an autumn change is listed twice), and accept them back.
        self.wall_times = False
        self.faults = FaultQueue()
        self.requests = RequestLog()
        self._lock = threading.RLock()
        self._tokens: dict[str, Token] = {}
        for token, scopes in (tokens or {DEFAULT_TOKEN: SCOPE_LEVELS}).items():
            self.add_token(token, scopes)
        stamp = aware(self.now())
        self._catalog = _Catalog()
        self._catalog.calendars[DEFAULT_CALENDAR_ID] = Calendar(
            DEFAULT_CALENDAR_ID, "Sales demos", timezone, stamp
        )
        for resource_id, name, color in zip(
            DEFAULT_RESOURCE_IDS, ("Alex Berger", "Jamie Novak"), ("#f97316", "#8b5cf6"), strict=True
        ):
            self._catalog.resources[resource_id] = Resource(
                resource_id, name, color, max_parallel_bookings, (DEFAULT_CALENDAR_ID,)
            )
        self._catalog.appointment_types[DEFAULT_APPOINTMENT_TYPE_ID] = AppointmentType(
            DEFAULT_APPOINTMENT_TYPE_ID, "Intro Call", booking_length, booking_length, 0, DEFAULT_RESOURCE_IDS
        )
        self._leads: dict[str, Lead] = {}
        self._bookings: dict[str, Booking] = {}
        self._races: list[Race] = []

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    # -- tokens -----------------------------------------------------------------------------

    def add_token(self, token: str, scopes: Iterable[str], expires_at: datetime | None = None) -> str:
        chosen = frozenset(scopes)
        if not token.startswith(TOKEN_PREFIX):
            raise SandboxError(f"RocketLead tokens start with {TOKEN_PREFIX!r}; got {token!r}.")
        if not chosen or not chosen <= set(SCOPE_LEVELS):
            raise SandboxError(f"Scopes must be a non-empty subset of {sorted(SCOPE_LEVELS)}.")
        with self._lock:
            self._tokens[token] = Token(chosen, aware(expires_at) if expires_at else None)
        return token

    def new_token(self, scopes: Iterable[str], expires_at: datetime | None = None) -> str:
        """A fresh ``rocketlead_live_<64 hex>`` token with `scopes`."""
        return self.add_token(f"rocketlead_live_{secrets.token_hex(32)}", scopes, expires_at)

    def revoke_token(self, token: str) -> None:
        with self._lock:
            if token not in self._tokens:
                raise SandboxError("The sandbox holds no such token.")
            self._tokens[token].revoked = True

    def token(self, token: str) -> Token | None:
        with self._lock:
            return self._tokens.get(token)

    def token_records(self) -> list[tuple[str, Token]]:
        with self._lock:
            return list(self._tokens.items())

    def use_token(self, token: str) -> Token | None:
        """The token's record if it is usable now (stamping ``last_used_at``), else None."""
        with self._lock:
            record = self._tokens.get(token)
            now = aware(self.now())
            if (
                record is None
                or record.revoked
                or (record.expires_at is not None and now >= record.expires_at)
            ):
                return None
            record.last_used_at = now
            return record

    # -- lookups ----------------------------------------------------------------------------

    def calendars(self) -> list[Calendar]:
        with self._lock:
            return list(self._catalog.calendars.values())

    def resources(self) -> list[Resource]:
        with self._lock:
            return list(self._catalog.resources.values())

    def appointment_types(self) -> list[AppointmentType]:
        with self._lock:
            return list(self._catalog.appointment_types.values())

    def calendar(self, calendar_id: str) -> Calendar:
        return self._find(self._catalog.calendars, "Calendar", calendar_id)

    def resource(self, resource_id: str) -> Resource:
        return self._find(self._catalog.resources, "Resource", resource_id)

    def appointment_type(self, appointment_type_id: str) -> AppointmentType:
        return self._find(self._catalog.appointment_types, "Appointment type", appointment_type_id)

    def add_resource(
        self,
        name: str,
        color: str = "#64748b",
        max_parallel_bookings: int = 1,
        calendar_id: str = DEFAULT_CALENDAR_ID,
        appointment_type_id: str = DEFAULT_APPOINTMENT_TYPE_ID,
    ) -> str:
        """A new resource mapped to the calendar and the appointment type."""
        with self._lock:
            self.calendar(calendar_id)
            atype = self.appointment_type(appointment_type_id)
            resource = Resource(str(uuid.uuid4()), name, color, max_parallel_bookings, (calendar_id,))
            self._catalog.resources[resource.id] = resource
            self._catalog.appointment_types[atype.id] = replace(
                atype, resource_ids=(*atype.resource_ids, resource.id)
            )
            return resource.id

    def set_capacity(self, max_parallel_bookings: int, resource_id: str | None = None) -> None:
        """``maxParallelBookings`` of one resource, or of every resource."""
        if max_parallel_bookings < 1:
            raise SandboxError("maxParallelBookings must be at least 1.")
        with self._lock:
            chosen = [self.resource(resource_id)] if resource_id else self.resources()
            for resource in chosen:
                self._catalog.resources[resource.id] = replace(
                    resource, max_parallel_bookings=max_parallel_bookings
                )

    def set_grid(
        self,
        step_minutes: int | None = None,
        booking_length: int | None = None,
        buffer_after: int | None = None,
        appointment_type_id: str = DEFAULT_APPOINTMENT_TYPE_ID,
    ) -> None:
        """The default availability step, and the appointment type's length and buffer."""
        for name, value in (("step_minutes", step_minutes), ("booking_length", booking_length)):
            if value is not None and value < 1:
                raise SandboxError(f"{name} must be at least 1.")
        if buffer_after is not None and buffer_after < 0:
            raise SandboxError("buffer_after must not be negative.")
        with self._lock:
            atype = self.appointment_type(appointment_type_id)
            if step_minutes is not None:
                self.step_minutes = step_minutes
            self._catalog.appointment_types[atype.id] = replace(
                atype,
                booking_length=booking_length if booking_length is not None else atype.booking_length,
                search_length=booking_length if booking_length is not None else atype.search_length,
                buffer_after=buffer_after if buffer_after is not None else atype.buffer_after,
            )

    # -- leads ------------------------------------------------------------------------------

    def add_lead(
        self,
        email: str,
        first_name: str | None = None,
        last_name: str | None = None,
        phone: str | None = None,
        lead_state_id: str = LEAD_STATES[0]["id"],
    ) -> str:
        if lead_state_id not in {s["id"] for s in LEAD_STATES}:
            raise SandboxError(f"Unknown lead state {lead_state_id!r}.")
        values = {"firstName": first_name, "lastName": last_name, "email": email, "phone": phone}
        lead = Lead(
            str(uuid.uuid4()),
            DEFAULT_TABLE_ID,
            {k: v for k, v in values.items() if v is not None},
            lead_state_id,
            aware(self.now()),
        )
        with self._lock:
            self._leads[lead.id] = lead
        return lead.id

    def leads(self) -> list[Lead]:
        with self._lock:
            return list(self._leads.values())

    def lead(self, lead_id: str) -> Lead:
        return self._find(self._leads, "Table entry", lead_id)

    def tables(self) -> list[dict[str, Any]]:
        return [
            {
                "id": DEFAULT_TABLE_ID,
                "organizationId": ORGANIZATION_ID,
                "name": "Leads",
                "leadStates": [{**s, "isDefault": i == 0} for i, s in enumerate(LEAD_STATES)],
                "schemaFields": self._schema_fields(),
            }
        ]

    def _schema_fields(self) -> dict[str, Any]:
        seen = format_time(aware(self.now()))
        return {
            key: {**spec, "hidden": False, "frequency": 1, "lastSeen": seen, "isDeprecated": False}
            for key, spec in SCHEMA_FIELDS.items()
        }

    # -- availability -----------------------------------------------------------------------

    def slots(
        self,
        calendar_id: str,
        appointment_type_id: str,
        start: datetime,
        end: datetime,
        resource_id: str | None = None,
        step_minutes: int | None = None,
    ) -> list[Slot]:
        """What ``GET /connect/availability/`` answers, full slots included."""
        start, end = aware(start), aware(end)
        with self._lock:
            calendar = self.calendar(calendar_id)
            atype = self.appointment_type(appointment_type_id)
            if resource_id is not None:
                resources = [self.resource(resource_id)]
            else:
                resources = [
                    r
                    for r in self.resources()
                    if calendar.id in r.calendar_ids and r.id in atype.resource_ids
                ]
            step = timedelta(minutes=step_minutes or self.step_minutes)
            length = timedelta(minutes=atype.booking_length)
            local = start.astimezone(ZoneInfo(calendar.timezone))
            origin = local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)
            at = origin + -((origin - start) // step) * step  # first grid point >= start
            now = aware(self.now())
            slots = []
            while at + length <= end:
                if at >= now:
                    slots.extend(
                        Slot(
                            r,
                            atype.id,
                            at,
                            at + length,
                            self._current(r.id, at, at + length, atype.buffer_after),
                        )
                        for r in resources
                    )
                at += step
            return sorted(slots, key=lambda s: (s.start, s.resource.name, s.resource.id))

    def _current(
        self,
        resource_id: str,
        start: datetime,
        end: datetime,
        buffer: int,
    ) -> int:
        count = 0
        for booking in self._bookings.values():
            if booking.resource_id != resource_id:
                continue
            other = self._catalog.appointment_types.get(booking.appointment_type_id)
            other_buffer = timedelta(minutes=other.buffer_after if other else 0)
            if booking.start < end + timedelta(minutes=buffer) and start < booking.end + other_buffer:
                count += 1
        return count

    def current_bookings(
        self,
        resource_id: str,
        start: datetime,
        end: datetime,
        appointment_type_id: str = DEFAULT_APPOINTMENT_TYPE_ID,
    ) -> int:
        with self._lock:
            atype = self.appointment_type(appointment_type_id)
            return self._current(resource_id, aware(start), aware(end), atype.buffer_after)

    # -- bookings ---------------------------------------------------------------------------

    def book_slot(
        self,
        *,
        calendar_id: str,
        resource_id: str,
        appointment_type_id: str,
        start: datetime,
        end: datetime,
        name: str | None = None,
        table_entry_id: str | None = None,
        resource_slot_id: str | None = None,
        schedule_type_id: str | None = None,
        schedule_type_slot_id: str | None = None,
    ) -> Booking:
        """``POST /connect/calendar_bookings/`` after its field checks: the transactional part.

        Raises `UnknownRecordError` (404), `BookingValidationError` (400) or
        `SlotUnavailableError` (400 "The selected time slot is no longer available").
        """
        start, end = aware(start), aware(end)
        with self._lock:
            calendar = self.calendar(calendar_id)
            resource = self.resource(resource_id)
            atype = self.appointment_type(appointment_type_id)
            if table_entry_id is not None:
                self.lead(table_entry_id)
            if calendar.id not in resource.calendar_ids:
                raise BookingValidationError("Validation failed: resourceId is not mapped to calendarId")
            if resource.id not in atype.resource_ids:
                raise BookingValidationError(
                    "Validation failed: resourceId is not mapped to appointmentTypeId"
                )
            if end - start != timedelta(minutes=atype.booking_length):
                raise BookingValidationError(
                    "Validation failed: endDateTime must be startDateTime plus the appointment "
                    f"type's bookingLength ({atype.booking_length} minutes)"
                )
            if resource_slot_id is not None and resource_slot_id != slot_id(resource.id, start, end):
                raise BookingValidationError(
                    "Validation failed: resourceSlotId does not match resourceId, startDateTime "
                    "and endDateTime"
                )
            if start < aware(self.now()):
                raise SlotUnavailableError()
            if self._take_race(resource.id, start):
                self.fill_slot(start, resource.id, atype.id, calendar_id=calendar.id)
            if self._current(resource.id, start, end, atype.buffer_after) >= (resource.max_parallel_bookings):
                raise SlotUnavailableError()
            return self._insert(
                Booking(
                    str(uuid.uuid4()),
                    calendar.id,
                    resource.id,
                    atype.id,
                    start,
                    end,
                    aware(self.now()),
                    name,
                    table_entry_id,
                    schedule_type_id,
                    schedule_type_slot_id,
                    SOURCE_API,
                )
            )

    def book(
        self,
        start: datetime,
        end: datetime | None = None,
        *,
        resource_id: str = DEFAULT_RESOURCE_IDS[0],
        appointment_type_id: str = DEFAULT_APPOINTMENT_TYPE_ID,
        calendar_id: str = DEFAULT_CALENDAR_ID,
        name: str | None = None,
        table_entry_id: str | None = None,
        source: str = SOURCE_FORM,
    ) -> Booking:
        """A booking made elsewhere (form widget, console): no checks, capacity may overflow."""
        start = aware(start)
        with self._lock:
            self.calendar(calendar_id)
            self.resource(resource_id)
            atype = self.appointment_type(appointment_type_id)
            if table_entry_id is not None:
                self.lead(table_entry_id)
            end = aware(end) if end else start + timedelta(minutes=atype.booking_length)
            if end <= start:
                raise SandboxError("A booking must end after it starts.")
            return self._insert(
                Booking(
                    str(uuid.uuid4()),
                    calendar_id,
                    resource_id,
                    atype.id,
                    start,
                    end,
                    aware(self.now()),
                    name,
                    table_entry_id,
                    source=source,
                )
            )

    def fill_slot(
        self,
        start: datetime,
        resource_id: str = DEFAULT_RESOURCE_IDS[0],
        appointment_type_id: str = DEFAULT_APPOINTMENT_TYPE_ID,
        *,
        calendar_id: str = DEFAULT_CALENDAR_ID,
    ) -> list[Booking]:
        """Form-widget bookings until the slot at `start` is at ``maxParallelBookings``."""
        start = aware(start)
        with self._lock:
            resource = self.resource(resource_id)
            atype = self.appointment_type(appointment_type_id)
            end = start + timedelta(minutes=atype.booking_length)
            missing = resource.max_parallel_bookings - self._current(
                resource.id, start, end, atype.buffer_after
            )
            return [
                self.book(
                    start,
                    end,
                    resource_id=resource.id,
                    appointment_type_id=atype.id,
                    calendar_id=calendar_id,
                    name="Booked via form",
                )
                for _ in range(max(missing, 0))
            ]

    def race_next_booking(
        self, start: datetime | None = None, resource_id: str | None = None, times: int = 1
    ) -> Race:
        """The next `times` booking POSTs (for `start`/`resource_id`, if given) lose a race."""
        if times < 1:
            raise SandboxError("A race must apply at least once (times >= 1).")
        with self._lock:
            if resource_id is not None:
                self.resource(resource_id)
            race = Race(aware(start) if start else None, resource_id, times)
            self._races.append(race)
            return race

    def races(self) -> list[Race]:
        with self._lock:
            return list(self._races)

    def clear_races(self) -> None:
        with self._lock:
            self._races.clear()

    def _take_race(self, resource_id: str, start: datetime) -> bool:
        for race in self._races:
            if race.matches(resource_id, start):
                race.times -= 1
                if race.times == 0:
                    self._races.remove(race)
                return True
        return False

    def _insert(self, booking: Booking) -> Booking:
        self._bookings[booking.id] = booking
        return booking

    def get(self, booking_id: str) -> Booking:
        return self._find(self._bookings, "Calendar booking", booking_id)

    def remove(self, booking_id: str) -> None:
        """Hard delete, as ``DELETE /connect/calendar_bookings/:id``."""
        with self._lock:
            self.get(booking_id)
            del self._bookings[booking_id]

    def bookings(self) -> list[Booking]:
        with self._lock:
            return sorted(self._bookings.values(), key=lambda b: (b.start, b.created_at, b.id))

    def time_format(self, calendar_id: str = DEFAULT_CALENDAR_ID) -> Callable[[datetime], str]:
        """How times go out: UTC with Z, or (`wall_times`) the calendar's local wall time."""
        if not self.wall_times:
            return format_time
        zone = self.calendar(calendar_id).timezone
        return lambda value: format_wall(value, zone)

    def wire(self, booking: Booking) -> dict[str, Any]:
        """The booking object as the bookings page's response schema names it."""
        data: dict[str, Any] = {"organizationId": ORGANIZATION_ID, "calendarId": booking.calendar_id}
        lead = self._leads.get(booking.table_entry_id) if booking.table_entry_id else None
        if lead is not None:
            data |= {
                "tableEntryId": lead.id,
                "tableEntryData": lead.wire()["data"],
                "tableId": lead.table_id,
                "tableSchemaFields": self._schema_fields(),
            }
        if booking.schedule_type_id:
            data["calendarScheduleTypeId"] = booking.schedule_type_id
        if booking.schedule_type_slot_id:
            data["calendarScheduleTypeSlotId"] = booking.schedule_type_slot_id
        data |= {
            "resourceId": booking.resource_id,
            "appointmentTypeId": booking.appointment_type_id,
            "resourceSlotId": booking.resource_slot_id,
            "id": booking.id,
        }
        if booking.name is not None:
            data["name"] = booking.name
        fmt = (
            self.time_format(booking.calendar_id)
            if booking.calendar_id in self._catalog.calendars
            else format_time
        )
        data |= {
            "createdAt": format_time(booking.created_at),
            "endDateTime": fmt(booking.end),
            "startDateTime": fmt(booking.start),
        }
        if lead is not None:
            state = next(s for s in LEAD_STATES if s["id"] == lead.lead_state_id)
            data |= {"leadStateColor": state["color"], "leadStateName": state["name"]}
        return data

    # -- faults -----------------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        self.faults.add(fault)

    def after_availability(self, action: Callable[[], None]) -> None:
        """Run `action` once the next availability answer is computed, before it is sent."""
        self.faults.add(Fault(kind="mutate", offset=0, action=action, path=AVAILABILITY_PATH))

    def _find(self, table: dict[str, Any], kind: str, record_id: str) -> Any:
        with self._lock:
            try:
                return table[record_id]
            except KeyError:
                raise UnknownRecordError(kind, record_id) from None


# -- HTTP ---------------------------------------------------------------------------------------


def envelope(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"statusCode": status, "message": message}, status, headers=headers)


class Refused(Exception):
    """Raised by a handler to answer with `response` at once."""

    def __init__(self, response: Response) -> None:
        self.response = response


def invalid(message: str) -> Refused:
    return Refused(envelope(400, f"Validation failed: {message}"))


def authorize(state: RocketLeadState, request: Request) -> None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    record = state.use_token(token) if scheme.lower() == "bearer" and token.startswith(TOKEN_PREFIX) else None
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
    fault = state.faults.take_before(request.method, request.url.path, listing=listing)
    if fault is None:
        return None
    if fault.kind == "delay":
        await asyncio.sleep(fault.seconds)
        return None
    if fault.kind == "429":
        extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        raise Refused(envelope(429, "Too Many Requests", extra))
    if fault.kind == "500":
        raise Refused(envelope(500, "Internal server error"))
    return fault


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


def create_app(state: RocketLeadState) -> FastAPI:
    # Imported here: the control module builds on this one's state.
    from bookingsync.sandbox.rocketlead_control import control_router

    app = FastAPI(title="RocketLead Connect sandbox", openapi_url=None, docs_url=None, redoc_url=None)
    app.router.redirect_slashes = False
    install_request_log(app, state.requests, state.now)
    install_answer_faults(app, state.faults)
    app.include_router(control_router(state))

    @app.exception_handler(Refused)
    async def refused(_request: Request, exc: Refused) -> Response:
        return exc.response

    @app.exception_handler(StarletteHTTPException)
    async def no_route(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith(CONTROL_PREFIX):
            return JSONResponse({"error": str(exc.detail)}, exc.status_code)
        if exc.status_code in (404, 405):
            return envelope(404, f"Cannot {request.method} {request.url.path}")
        return envelope(exc.status_code, str(exc.detail))

    def route(method: str, path: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register `path` with and without its trailing slash (Express is not strict)."""

        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            for variant in {path, path.rstrip("/")}:
                app.add_api_route(variant, handler, methods=[method, "HEAD"] if method == "GET" else [method])
            return handler

        return register

    def tables_by_id(table_id: str) -> dict[str, Any]:
        for table in state.tables():
            if table["id"] == table_id:
                return table
        raise UnknownRecordError("Table", table_id)

    lookups: list[tuple[str, Callable[[], list[dict[str, Any]]], Callable[[str], Any]]] = [
        ("/connect/calendar/", lambda: [c.wire() for c in state.calendars()], state.calendar),
        ("/connect/resources/", lambda: [r.wire() for r in state.resources()], state.resource),
        (
            "/connect/appointment_types/",
            lambda: [a.wire() for a in state.appointment_types()],
            state.appointment_type,
        ),
        ("/connect/tables/", state.tables, tables_by_id),
    ]
    for base, listing, single in lookups:

        def add(
            listing: Callable[[], list[dict[str, Any]]] = listing,
            single: Callable[[str], Any] = single,
            base: str = base,
        ) -> None:
            @route("GET", base)
            async def list_all(request: Request) -> Response:
                await before(state, request)
                return JSONResponse(listing())

            @route("GET", base + "{record_id}/")
            async def one(record_id: str, request: Request) -> Response:
                await before(state, request)
                return JSONResponse(_lookup(state, single, record_id))

        add()

    @route("GET", AVAILABILITY_PATH)
    async def availability(request: Request) -> Response:
        fault = await before(state, request, listing=True)
        params = request.query_params
        _required(params, ("calendarId", "appointmentTypeId", "start", "end"))
        start, end = _time_param(params["start"], "start"), _time_param(params["end"], "end")
        if end <= start:
            raise invalid("end must be after start")
        if end - start > MAX_RANGE:
            raise invalid("the range between start and end must not exceed 31 days")
        include = params.get("includeUnavailable", "true").lower()
        if include not in ("true", "false"):
            raise invalid("includeUnavailable must be a boolean")
        step = None
        if (raw := params.get("stepLength")) is not None:
            step = int(raw) if raw.isdigit() else 0
            if not MIN_STEP_MINUTES <= step <= MAX_STEP_MINUTES:
                raise invalid(
                    f"stepLength must be an integer between {MIN_STEP_MINUTES} and {MAX_STEP_MINUTES}"
                )
        try:
            with state.lock:
                slots = state.slots(
                    params["calendarId"],
                    params["appointmentTypeId"],
                    start,
                    end,
                    params.get("resourceId") or None,
                    step,
                )
                atype = state.appointment_type(params["appointmentTypeId"])
        except UnknownRecordError as exc:
            return envelope(404, exc.message)
        if include == "false" and state.include_unavailable_filters:
            slots = [s for s in slots if s.available]
        data = [s.wire(state.time_format(params["calendarId"])) for s in slots]
        for mutation in state.faults.take_after_page(request.method, request.url.path, 0):
            assert mutation.action is not None  # Fault refuses a mutate without one
            mutation.action()
        if fault is not None and fault.kind == "malformed":
            data.append(
                _malformed(
                    data[0]
                    if data
                    else {
                        "resourceId": DEFAULT_RESOURCE_IDS[0],
                        "resourceName": "Broken",
                        "resourceColor": "#000000",
                        "appointmentTypeId": atype.id,
                        "startDateTime": format_time(start),
                        "endDateTime": format_time(end),
                        "maxParallelBookings": 1,
                        "currentBookings": 0,
                        "available": True,
                    },
                    fault.variant,
                )
            )
        meta = {
            "appointmentTypeName": atype.name,
            "defaultBookingLength": atype.booking_length,
            "bufferAfter": atype.buffer_after,
            "dynamicLength": atype.dynamic_length,
        }
        return JSONResponse({"data": data, "meta": meta})

    @route("POST", BOOKINGS_PATH)
    async def create_booking(request: Request) -> Response:
        await before(state, request)
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise invalid("the request body must be a JSON object")
        _required(body, ("calendarId", "startDateTime", "endDateTime", "resourceId", "appointmentTypeId"))
        for name in (
            "calendarId",
            "resourceId",
            "appointmentTypeId",
            "entryId",
            "tableEntryId",
            "scheduleTypeId",
            "scheduleTypeSlotId",
            "resourceSlotId",
            "name",
        ):
            if body.get(name) is not None and not isinstance(body[name], str):
                raise invalid(f"{name} must be a string")
        if state.wall_times and isinstance(body["calendarId"], str):
            start, end = _wall_pair(state, body)
        else:
            start = _time_param(body["startDateTime"], "startDateTime")
            end = _time_param(body["endDateTime"], "endDateTime")
        if end <= start:
            raise invalid("endDateTime must be after startDateTime")
        entry, table_entry = body.get("entryId") or None, body.get("tableEntryId") or None
        if entry and table_entry and entry != table_entry:
            raise invalid("entryId and tableEntryId name different table entries")
        try:
            booking = state.book_slot(
                calendar_id=body["calendarId"],
                resource_id=body["resourceId"],
                appointment_type_id=body["appointmentTypeId"],
                start=start,
                end=end,
                name=body.get("name"),
                table_entry_id=entry or table_entry,
                resource_slot_id=body.get("resourceSlotId") or None,
                schedule_type_id=body.get("scheduleTypeId") or None,
                schedule_type_slot_id=body.get("scheduleTypeSlotId") or None,
            )
        except UnknownRecordError as exc:
            return envelope(404, exc.message)
        except (BookingValidationError, SlotUnavailableError) as exc:
            return envelope(400, str(exc))
        with state.lock:
            return JSONResponse(state.wire(booking), 201)

    @route("DELETE", BOOKINGS_PATH + "{booking_id}/")
    async def delete_booking(booking_id: str, request: Request) -> Response:
        await before(state, request)
        try:
            state.remove(booking_id)
        except UnknownRecordError as exc:
            return envelope(404, exc.message)
        return Response(status_code=204)

    return app
