"""RocketLead's availability and bookings: the slots of a calendar's grid, booking one with the
transactional recheck, filling slots by form bookings and racing a client to a slot.

Built on `store`, whose fields (the lock, the catalog, the bookings and races) and lookups it
reads; `state.RocketLeadState` is the two together.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bookingsync.sandbox.errors import SandboxError

from .records import (
    DEFAULT_APPOINTMENT_TYPE_ID,
    DEFAULT_CALENDAR_ID,
    DEFAULT_RESOURCE_IDS,
    SOURCE_API,
    SOURCE_FORM,
    Booking,
    BookingValidationError,
    Race,
    Slot,
    SlotUnavailableError,
    aware,
    slot_id,
)
from .store import Store


class Scheduling(Store):
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
            slots: list[Slot] = []
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
