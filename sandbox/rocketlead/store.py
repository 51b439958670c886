"""What the RocketLead simulator holds: tokens, the catalog (calendars, resources, appointment
types), leads and tables in memory, and how a booking is written; availability and bookings are
built on it in `scheduling`."""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any

from bookingsync.sandbox.clock import utc_now
from bookingsync.sandbox.errors import SandboxError
from bookingsync.sandbox.faults import Fault, FaultQueue
from bookingsync.sandbox.request_log import RequestLog

from .records import (
    AVAILABILITY_PATH,
    DEFAULT_APPOINTMENT_TYPE_ID,
    DEFAULT_CALENDAR_ID,
    DEFAULT_RESOURCE_IDS,
    DEFAULT_TABLE_ID,
    DEFAULT_TOKEN,
    LEAD_STATES,
    ORGANIZATION_ID,
    SCHEMA_FIELDS,
    SCOPE_LEVELS,
    TOKEN_PREFIX,
    AppointmentType,
    Booking,
    Calendar,
    Lead,
    Race,
    Resource,
    Token,
    UnknownRecordError,
    _Catalog,
    aware,
    format_time,
    format_wall,
)


class Store:
    """The fields, tokens, catalog and leads; every method is safe to call from any thread."""

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
