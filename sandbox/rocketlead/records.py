"""RocketLead Connect's wire records and constants: calendars, resources, appointment types, leads,
bookings and slots as the API writes them, the scopes, ids and paths, the time formats (UTC
`toISOString`, or local wall times) and the errors the state raises."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bookingsync.sandbox.clock import aware as naive_as_utc
from bookingsync.sandbox.errors import SandboxError, UnknownMeetingError

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
    return naive_as_utc(value).astimezone(UTC)


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
