"""Meetergo appointments: book, create, reschedule and cancel appointments, the provisional bookings of
double opt-in and host confirmation, and the paginated listing. Built on `availability` (which
hosts are free) and `subscriptions` (the webhooks a change sends); the fields are `store`'s."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from bookingsync.sandbox.clock import aware
from bookingsync.sandbox.errors import SandboxError, UnknownMeetingError

from .availability import Availability
from .records import (
    BOOKING_TYPE_DOUBLE_OPT_IN,
    BOOKING_TYPE_HOST_CONFIRMATION,
    MEETING_TYPE_ID,
    SLOT_TAKEN,
    BookingResult,
    Cancellation,
    MeetergoAppointment,
    MeetergoAttendee,
    MeetergoMeetingType,
    MeetergoRefusal,
    ProvisionalBooking,
    _meeting_link,
    validation_failed,
)
from .subscriptions import Subscriptions
from .webhooks import (
    BOOKING_CANCELLED,
    BOOKING_CREATED,
    BOOKING_RESCHEDULED,
)


class Appointments(Availability, Subscriptions):
    def book(
        self,
        meeting_type_id: str,
        start: datetime,
        attendee: MeetergoAttendee,
        *,
        host_ids: Iterable[str] = (),
        queue_id: str | None = None,
        duration: int | None = None,
        channel: str | None = None,
        location: str | None = None,
        title: str | None = None,
        description: str | None = None,
        ignore_availability: bool = False,
        rescheduled_from_id: str | None = None,
        acting_user_id: str | None = None,
    ) -> BookingResult:
        """``POST /v4/booking``: an appointment, or a provisional booking for a meeting type
        with double opt-in or host confirmation. Raises `MeetergoRefusal`."""
        with self._lock:
            mt = self._meeting_types.get(meeting_type_id)
            if mt is None:
                raise MeetergoRefusal(404, "Meeting type not found")
            start = aware(start)
            length = duration or mt.duration
            if length not in mt.durations():
                raise validation_failed(
                    "duration", f"duration must be one of {', '.join(map(str, mt.durations()))}"
                )
            hosts = self._choose_hosts(mt, tuple(host_ids), queue_id)
            old = None
            if rescheduled_from_id is not None:
                old = self._appointments.get(rescheduled_from_id)
                if old is None:
                    raise MeetergoRefusal(404, "Appointment not found")
                if old.is_cancelled:
                    raise MeetergoRefusal(400, "Appointment is cancelled and cannot be rescheduled")
            end = start + timedelta(minutes=length)
            if not ignore_availability:
                hosts = self._free_hosts(
                    mt, hosts, start, length, queue_id is not None, ignore=old.id if old else None
                )
            chosen_channel = channel or mt.channel
            kind = (
                BOOKING_TYPE_DOUBLE_OPT_IN
                if mt.double_opt_in
                else BOOKING_TYPE_HOST_CONFIRMATION
                if mt.requires_host_confirmation
                else None
            )
            if kind is not None and old is None:
                stamp = self.now()
                prov = ProvisionalBooking(
                    id=str(uuid.uuid4()),
                    booking_type=kind,
                    meeting_type_id=mt.id,
                    start=start,
                    end=end,
                    host_ids=hosts,
                    attendee=attendee,
                    channel=chosen_channel,
                    location=location,
                    title=title,
                    description=description,
                    created_at=stamp,
                    updated_at=stamp,
                    expires_at=stamp + timedelta(hours=mt.provisional_ttl_hours),
                )
                self._provisional[prov.id] = prov
                return BookingResult(provisional=prov)
            appt = self._new_appointment(
                mt, start, end, hosts, (attendee,), chosen_channel, location, title, description
            )
            if old is None:
                self._emit(BOOKING_CREATED, appt)
                return BookingResult(appointment=appt)
            appt = replace(
                appt,
                rescheduled_at=appt.created_at,
                rescheduled_from_id=old.id,
                original_start=old.start,
                original_end=old.end,
            )
            self._appointments[appt.id] = appt
            if self.reschedule_cancels_old:
                self._cancel(old.id, "Rescheduled", "reschedule", acting_user_id, notify=False)
            self._emit(BOOKING_RESCHEDULED, appt)
            return BookingResult(appointment=appt)

    def create_appointment(
        self,
        start: datetime,
        attendee_email: str,
        *,
        meeting_type_id: str = MEETING_TYPE_ID,
        attendee_name: str | None = None,
        duration: int | None = None,
        end: datetime | None = None,
        host_ids: Iterable[str] = (),
        phone: str | None = None,
        timezone: str | None = None,
        channel: str | None = None,
        location: str | None = None,
        title: str | None = None,
        check_availability: bool = False,
    ) -> MeetergoAppointment:
        """An appointment booked in meetergo's own UI: no provisional step; booking_created."""
        with self._lock:
            mt = self._require_meeting_type(meeting_type_id)
            start = aware(start)
            finish = aware(end) if end else start + timedelta(minutes=duration or mt.duration)
            hosts = tuple(host_ids) or mt.host_ids[:1]
            if check_availability and any(self.host_busy(h, start, finish) for h in hosts):
                raise MeetergoRefusal(400, SLOT_TAKEN)
            attendee = MeetergoAttendee(
                email=attendee_email, fullname=attendee_name, phone=phone, timezone=timezone
            )
            appt = self._new_appointment(
                mt, start, finish, hosts, (attendee,), channel or mt.channel, location, title, None
            )
            self._emit(BOOKING_CREATED, appt)
            return appt

    def reschedule(
        self,
        appointment_id: str,
        start: datetime,
        *,
        duration: int | None = None,
        end: datetime | None = None,
        new_id: bool = False,
        check_availability: bool = False,
        acting_user_id: str | None = None,
    ) -> MeetergoAppointment:
        """Move an appointment; `new_id` books a successor and cancels the original (the docs'
        pattern), otherwise it moves in place. Sends booking_rescheduled."""
        with self._lock:
            old = self.get(appointment_id)
            if old.is_cancelled:
                raise MeetergoRefusal(400, "Appointment is cancelled and cannot be rescheduled")
            mt = self._require_meeting_type(old.meeting_type_id)
            start = aware(start)
            length = duration or int((old.end - old.start).total_seconds() // 60)
            finish = aware(end) if end else start + timedelta(minutes=length)
            if check_availability and (
                not self.is_bookable_time(mt, start, length)
                or any(self.host_busy(h, start, finish, ignore_appointment=old.id) for h in old.host_ids)
            ):
                raise MeetergoRefusal(400, SLOT_TAKEN)
            stamp = self.now()
            if new_id:
                appt = self._new_appointment(
                    mt,
                    start,
                    finish,
                    old.host_ids,
                    old.attendees,
                    old.channel,
                    old.location,
                    old.title,
                    old.description,
                )
                appt = replace(
                    appt,
                    rescheduled_at=stamp,
                    rescheduled_from_id=old.id,
                    original_start=old.start,
                    original_end=old.end,
                )
                self._appointments[appt.id] = appt
                if self.reschedule_cancels_old:
                    self._cancel(old.id, "Rescheduled", "reschedule", acting_user_id, notify=False)
            else:
                appt = replace(
                    old,
                    start=start,
                    end=finish,
                    updated_at=stamp,
                    rescheduled_at=stamp,
                    rescheduled_from_id=old.id,
                    original_start=old.start,
                    original_end=old.end,
                )
                self._appointments[appt.id] = appt
            self._emit(BOOKING_RESCHEDULED, appt)
            return appt

    def cancel(
        self,
        appointment_id: str,
        reason: str | None = None,
        *,
        action_source: str = "host",
        action_by: str | None = None,
    ) -> MeetergoAppointment:
        """Cancel; an appointment already cancelled stays as it was and notifies nobody."""
        with self._lock:
            return self._cancel(appointment_id, reason, action_source, action_by, notify=True)

    def confirm_provisional(self, provisional_id: str) -> MeetergoAppointment:
        """The attendee confirmed (double opt-in) or the host accepted: booking_created."""
        with self._lock:
            prov = self._pending(provisional_id)
            mt = self._require_meeting_type(prov.meeting_type_id)
            appt = self._new_appointment(
                mt,
                prov.start,
                prov.end,
                prov.host_ids,
                (prov.attendee,),
                prov.channel,
                prov.location,
                prov.title,
                prov.description,
            )
            appt = replace(appt, provisional_booking_id=prov.id)
            self._appointments[appt.id] = appt
            self._provisional[prov.id] = replace(
                prov, decided_status="confirmed", appointment_id=appt.id, updated_at=self.now()
            )
            self._emit(BOOKING_CREATED, appt)
            return appt

    def decline_provisional(self, provisional_id: str) -> ProvisionalBooking:
        with self._lock:
            prov = replace(
                self._pending(provisional_id), decided_status="declined_by_host", updated_at=self.now()
            )
            self._provisional[prov.id] = prov
            return prov

    def expire_provisional(self, provisional_id: str) -> ProvisionalBooking:
        with self._lock:
            prov = replace(self._pending(provisional_id), decided_status="expired", updated_at=self.now())
            self._provisional[prov.id] = prov
            return prov

    def get(self, appointment_id: str) -> MeetergoAppointment:
        with self._lock:
            try:
                return self._appointments[appointment_id]
            except KeyError:
                raise UnknownMeetingError(appointment_id) from None

    def appointments(self) -> list[MeetergoAppointment]:
        """Every appointment, cancelled ones included, in list-API order."""
        with self._lock:
            return sorted(self._appointments.values(), key=lambda a: (a.start, a.id))

    def provisional(self, provisional_id: str) -> ProvisionalBooking:
        with self._lock:
            try:
                return self._provisional[provisional_id]
            except KeyError:
                raise UnknownMeetingError(provisional_id) from None

    def provisional_bookings(self) -> list[ProvisionalBooking]:
        with self._lock:
            return sorted(self._provisional.values(), key=lambda p: (p.created_at, p.id))

    def visible_to(self, user_id: str) -> Callable[[MeetergoAppointment], bool]:
        user = self.user(user_id)
        if user is not None and user.role == "admin":
            return lambda _appt: True
        return lambda appt: user_id in appt.host_ids

    def list_page(self, user_id: str, page: int, page_size: int) -> tuple[list[dict[str, Any]], int]:
        """One page of appointment resources and how many the listing holds in all."""
        with self._lock:
            visible = self.visible_to(user_id)
            matching = [
                a for a in self.appointments() if visible(a) and not (self.hide_cancelled and a.is_cancelled)
            ]
            chunk = matching[page * page_size : (page + 1) * page_size]
            return [self.appointment_resource(a) for a in chunk], len(matching)

    def _new_appointment(
        self,
        mt: MeetergoMeetingType,
        start: datetime,
        end: datetime,
        hosts: tuple[str, ...],
        attendees: tuple[MeetergoAttendee, ...],
        channel: str,
        location: str | None,
        title: str | None,
        description: str | None,
    ) -> MeetergoAppointment:
        stamp = self.now()
        link = _meeting_link(channel)
        appt = MeetergoAppointment(
            id=str(uuid.uuid4()),
            secret=secrets.token_urlsafe(18),
            meeting_type_id=mt.id,
            start=start,
            end=end,
            host_ids=hosts,
            attendees=attendees,
            channel=channel,
            location=location if location is not None else (None if link else channel),
            meeting_link=link,
            title=title or (f"{mt.name} - {attendees[0].name}" if attendees else mt.name),
            description=description,
            created_at=stamp,
            updated_at=stamp,
            google_event_id=secrets.token_hex(13) if channel == "google" else None,
        )
        self._appointments[appt.id] = appt
        return appt

    def _cancel(
        self,
        appointment_id: str,
        reason: str | None,
        action_source: str,
        action_by: str | None,
        *,
        notify: bool,
    ) -> MeetergoAppointment:
        appt = self.get(appointment_id)
        if appt.is_cancelled:
            return appt
        stamp = self.now()
        appt = replace(appt, updated_at=stamp, cancel=Cancellation(action_source, stamp, action_by, reason))
        self._appointments[appt.id] = appt
        if notify:
            self._emit(BOOKING_CANCELLED, appt)
        return appt

    def _pending(self, provisional_id: str) -> ProvisionalBooking:
        prov = self.provisional(provisional_id)
        status = prov.status_at(self.now())
        if status != "pending":
            raise SandboxError(f"Provisional booking {provisional_id!r} is {status}, not pending.")
        return prov
