"""How Meetergo writes an appointment: the API resource, the webhook data, the provisional
booking resource and the ICS attachment. Built on `store`, whose users and meeting types it reads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .records import BOOKING_TYPE_STYLES, MeetergoAppointment, ProvisionalBooking, format_local, format_utc
from .store import Store
from .webhooks import (
    BOOKING_CANCELLED,
    BOOKING_CREATED,
    BOOKING_RESCHEDULED,
)


class WireShapes(Store):
    def _hosts(self, appt: MeetergoAppointment) -> list[dict[str, Any]]:
        return [u.host() for h in appt.host_ids if (u := self._users.get(h)) is not None]

    def _zone(self, meeting_type_id: str) -> str:
        mt = self._meeting_types.get(meeting_type_id)
        return mt.timezone if mt else "UTC"

    def appointment_resource(self, appt: MeetergoAppointment) -> dict[str, Any]:
        """An appointment as ``GET /v4/appointment/{id}`` and the paginated list answer it."""
        with self._lock:
            zone = self._zone(appt.meeting_type_id)
            hosts = self._hosts(appt)
            return {
                "id": appt.id,
                "secret": appt.secret,
                "ics": self._ics(appt),
                "meetingTypeId": appt.meeting_type_id,
                "companyId": self.company_id,
                "meetingInfo": {
                    "start": format_local(appt.start, zone),
                    "end": format_local(appt.end, zone),
                    "duration": int((appt.end - appt.start).total_seconds() // 60),
                    "title": appt.title,
                    "description": appt.description,
                    "channel": appt.channel,
                    "location": appt.location,
                    "meetingLink": appt.meeting_link,
                    "timezone": zone,
                    "attendees": [a.api() for a in appt.attendees],
                },
                "hostingInfo": {
                    "mainHost": hosts[0] if hosts else None,
                    "coHosts": hosts[1:],
                    "hostIds": list(appt.host_ids),
                    "meetingLink": appt.meeting_link,
                    "googleEventId": appt.google_event_id,
                    "outlookEventId": None,
                    "calendarSyncProviders": {"google": appt.google_event_id is not None, "outlook": False},
                },
                "cancel": appt.cancel.public() if appt.cancel else None,
                "crmOptions": {},
                "rescheduledAt": format_utc(appt.rescheduled_at),
                "rescheduledFromId": appt.rescheduled_from_id,
                "createdAt": format_utc(appt.created_at),
                "updatedAt": format_utc(appt.updated_at),
            }

    def webhook_data(self, appt: MeetergoAppointment, webhook_type: str = BOOKING_CREATED) -> dict[str, Any]:
        """The event-specific fields of a booking_* webhook (without ``webhookType``)."""
        with self._lock:
            zone = self._zone(appt.meeting_type_id)
            mt = self._meeting_types.get(appt.meeting_type_id)
            data: dict[str, Any] = {
                "id": appt.id,
                "secret": appt.secret,
                "start": format_local(appt.start, zone),
                "end": format_local(appt.end, zone),
                "location": appt.location,
                "isCancelled": appt.is_cancelled,
                "rescheduledAt": format_utc(appt.rescheduled_at),
                "meetingInfo": {"channel": appt.channel, "meetingLink": appt.meeting_link},
                "attendees": [a.webhook() for a in appt.attendees],
                "hosts": self._hosts(appt),
                "hostIds": list(appt.host_ids),
                "meetingType": {
                    "id": appt.meeting_type_id,
                    "slug": mt.slug if mt else None,
                    "meetingInfo": {"name": mt.name if mt else None, "duration": mt.duration if mt else None},
                    "metadata": dict(mt.metadata) if mt else {},
                },
                "meetingTypeId": appt.meeting_type_id,
                "companyId": self.company_id,
                "createdAt": format_utc(appt.created_at),
                "updatedAt": format_utc(appt.updated_at),
            }
            if webhook_type == BOOKING_CANCELLED:
                data["cancel"] = appt.cancel.public() if appt.cancel else None
            if webhook_type == BOOKING_RESCHEDULED:
                data |= {
                    "originalStart": format_local(appt.original_start, zone),
                    "originalEnd": format_local(appt.original_end, zone),
                    "rescheduledFromId": appt.rescheduled_from_id,
                }
            return data

    def provisional_resource(self, prov: ProvisionalBooking) -> dict[str, Any]:
        with self._lock:
            zone = self._zone(prov.meeting_type_id)
            return {
                "id": prov.id,
                "status": prov.status_at(self.now()),
                "bookingType": self.booking_type_name(prov.booking_type),
                "meetingTypeId": prov.meeting_type_id,
                "start": format_local(prov.start, zone),
                "end": format_local(prov.end, zone),
                "hostIds": list(prov.host_ids),
                "attendee": prov.attendee.api(),
                "appointmentId": prov.appointment_id,
                "companyId": self.company_id,
                "createdAt": format_utc(prov.created_at),
                "updatedAt": format_utc(prov.updated_at),
                "expiresAt": format_utc(prov.expires_at),
            }

    def booking_type_name(self, kind: str) -> str:
        return BOOKING_TYPE_STYLES[self.booking_type_style][kind]

    def _ics(self, appt: MeetergoAppointment) -> str:
        def stamp(value: datetime) -> str:
            return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")

        attendees = "".join(f"ATTENDEE;CN={a.name}:mailto:{a.email}\r\n" for a in appt.attendees)
        hosts = self._hosts(appt)
        organizer = f"ORGANIZER;CN={hosts[0]['fullName']}:mailto:{hosts[0]['email']}\r\n" if hosts else ""
        return (
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//meetergo//sandbox//EN\r\n"
            f"METHOD:{'CANCEL' if appt.is_cancelled else 'REQUEST'}\r\nBEGIN:VEVENT\r\n"
            f"UID:{appt.id}@meetergo.com\r\nDTSTAMP:{stamp(appt.updated_at)}\r\n"
            f"DTSTART:{stamp(appt.start)}\r\nDTEND:{stamp(appt.end)}\r\n"
            f"SUMMARY:{appt.title}\r\n{organizer}{attendees}"
            f"STATUS:{'CANCELLED' if appt.is_cancelled else 'CONFIRMED'}\r\n"
            "END:VEVENT\r\nEND:VCALENDAR\r\n"
        )
