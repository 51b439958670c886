"""HubSpot's scheduler: busy times, the slots a meeting link offers and booking one. Built on
`meetings`: a booking creates a CRM meeting."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, time, timedelta
from typing import Any

from bookingsync.sandbox.clock import aware
from bookingsync.sandbox.errors import SandboxError

from .meetings import Meetings
from .records import (
    DEFAULT_LINK_SLUG,
    INCREMENTS,
    SLOT_UNAVAILABLE,
    SOURCE_BOOKING,
    HubSpotApiError,
    HubSpotMeeting,
    MeetingLink,
    format_time,
    zone,
)


class Scheduler(Meetings):
    def add_busy(self, start: datetime, end: datetime, user_id: str | None = None) -> None:
        """Mark a host busy (their calendar), by default the default link's organizer."""
        with self._lock:
            uid = user_id or self._links[DEFAULT_LINK_SLUG].organizer_user_id
            if uid not in self._users:
                raise SandboxError(f"No user {uid!r}.")
            self._users[uid].busy.append((aware(start), aware(end)))

    def busy_times(self, link: MeetingLink) -> dict[str, list[tuple[datetime, datetime]]]:
        """Busy ranges per member: their calendar plus live meetings booked on any link."""
        with self._lock:
            out = {u: list(self._users[u].busy) for u in link.user_ids}
            for meeting in self._meetings.values():
                span = meeting.span()
                owner = meeting.properties.get("hubspot_owner_id")
                if meeting.is_live() and span and owner in out:
                    out[owner].append(span)
            return out

    def slots(
        self, link: MeetingLink, duration_ms: int, start: datetime, end: datetime
    ) -> list[tuple[datetime, datetime]]:
        """Free slots of `duration_ms` starting within [start, end) and within the horizon."""
        with self._lock:
            now = self.now()
            horizon = now + timedelta(weeks=link.weeks_to_advertise)
            start, end = max(start, now), min(end, horizon)
            tz = zone(link.timezone)
            duration = timedelta(milliseconds=duration_ms)
            step = timedelta(minutes=INCREMENTS[link.start_increment] or duration_ms // 60_000)
            buffer = timedelta(milliseconds=link.buffer_ms)
            busy = self.busy_times(link)
            out: list[tuple[datetime, datetime]] = []
            day = start.astimezone(tz).date() - timedelta(days=1)
            while datetime.combine(day, time(), tz) < end:
                for low, high in link.weekly_hours.get(day.weekday(), []):
                    slot = datetime.combine(day, time(), tz) + timedelta(minutes=low)
                    close = datetime.combine(day, time(), tz) + timedelta(minutes=high)
                    while slot + duration <= close:
                        s, e = slot.astimezone(UTC), (slot + duration).astimezone(UTC)
                        if start <= s < end and self._free_members(link, busy, s, e, buffer):
                            out.append((s, e))
                        slot += step
                day += timedelta(days=1)
            return out

    @staticmethod
    def _free_members(
        link: MeetingLink,
        busy: dict[str, list[tuple[datetime, datetime]]],
        start: datetime,
        end: datetime,
        buffer: timedelta,
    ) -> list[str]:
        """Members free for [start, end) with `buffer` either side; a personal or group link
        needs all of them free (else none is returned), a round robin link any one."""
        free = [
            u
            for u in link.user_ids
            if not any(start - buffer < b_end and b_start < end + buffer for b_start, b_end in busy[u])
        ]
        if link.link_type == "ROUND_ROBIN_CALENDAR" or len(free) == len(link.user_ids):
            return free
        return []

    def book(
        self,
        slug: str,
        start: datetime,
        duration_ms: int,
        email: str,
        first_name: str,
        last_name: str,
        *,
        timezone: str | None = None,
        locale: str | None = None,
        form_fields: list[dict[str, str]] | None = None,
        legal_consent: list[dict[str, Any]] | None = None,
    ) -> tuple[HubSpotMeeting, dict[str, Any]]:
        """Book through a link as the public booking page does; the CRM meeting and the answer."""
        with self._lock:
            link = self._links.get(slug)
            if link is None:
                raise HubSpotApiError(
                    404, "OBJECT_NOT_FOUND", f"No meeting link with slug {slug!r} was found."
                )
            if duration_ms not in link.durations_ms:
                raise HubSpotApiError(
                    400,
                    "VALIDATION_ERROR",
                    f"Duration {duration_ms} is not offered by this "
                    f"link; offered: {link.durations_ms} (milliseconds).",
                    errors=[{"message": "Invalid duration.", "in": "duration"}],
                )
            start = aware(start).astimezone(UTC)
            free = self.slots(link, duration_ms, start, start + timedelta(milliseconds=1))
            if not free or free[0][0] != start:
                raise HubSpotApiError(
                    400,
                    "VALIDATION_ERROR",
                    "The requested time slot is no longer available. Please choose another time.",
                    sub_category=SLOT_UNAVAILABLE,
                    errors=[
                        {
                            "message": "Time slot unavailable.",
                            "in": "startTime",
                            "subCategory": SLOT_UNAVAILABLE,
                        }
                    ],
                )
            end = start + timedelta(milliseconds=duration_ms)
            free = self._free_members(
                link, self.busy_times(link), start, end, timedelta(milliseconds=link.buffer_ms)
            )
            host = self._users[link.organizer_user_id if link.organizer_user_id in free else free[0]]
            event_id = secrets.token_hex(13)
            conference = f"https://zoom.us/j/{secrets.randbelow(10**10):010d}"
            subject = f"{first_name} {last_name} and {host.first_name} {host.last_name}"
            meeting_id = self.create_meeting(
                subject,
                start,
                end,
                external_url=conference,
                attendee_email=email,
                attendee_firstname=first_name,
                attendee_lastname=last_name,
                owner_id=host.user_id,
                location=link.location,
                source=SOURCE_BOOKING,
                link_id=link.id,
                extra={
                    "hs_unique_id": event_id,
                    "hs_engagement_source": "MEETINGS_PUBLIC",
                    "hs_engagement_source_id": link.id,
                },
            )
            meeting = self._meetings[meeting_id]
            validated = [
                {
                    "name": "firstName",
                    "label": "First name",
                    "value": first_name,
                    "isCustom": False,
                    "fieldType": "text",
                },
                {
                    "name": "lastName",
                    "label": "Last name",
                    "value": last_name,
                    "isCustom": False,
                    "fieldType": "text",
                },
                {"name": "email", "label": "Email", "value": email, "isCustom": False, "fieldType": "text"},
            ] + [
                {"name": f["name"], "label": f["name"], "value": f["value"], "isCustom": True}
                for f in form_fields or []
            ]
            answer: dict[str, Any] = {
                "bookingTimezone": timezone or link.timezone,
                "calendarEventId": event_id,
                "contactId": meeting.contact_ids[0],
                "start": format_time(start),
                "end": format_time(end),
                "subject": subject,
                "formFields": validated,
                "guestEmails": [],
                "isOffline": False,
                "legalConsentResponses": list(legal_consent or []),
                "location": link.location,
                "webConferenceUrl": conference,
                "webConferenceMeetingId": conference.rsplit("/", 1)[-1],
            }
            if locale is not None:
                answer["locale"] = locale
            return meeting, answer
