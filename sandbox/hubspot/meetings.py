"""HubSpot CRM meetings: create, insert, update, reschedule, cancel, archive, read and normalise
their properties. Built on `subscriptions`: every change notifies the subscribers."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from bookingsync.sandbox.clock import aware
from bookingsync.sandbox.errors import UnknownMeetingError

from .records import (
    DATE_PROPERTIES,
    OUTCOMES,
    SOURCE_UI,
    SYSTEM_PROPERTIES,
    WRITABLE_PROPERTIES,
    HubSpotApiError,
    HubSpotMeeting,
    format_time,
    parse_time,
)
from .subscriptions import Subscriptions


class Meetings(Subscriptions):
    def create_meeting(
        self,
        title: str,
        start: datetime,
        end: datetime,
        *,
        outcome: str = "SCHEDULED",
        external_url: str | None = None,
        attendee_email: str | None = None,
        attendee_firstname: str = "",
        attendee_lastname: str = "",
        owner_id: str | None = None,
        location: str | None = None,
        body: str | None = None,
        extra: dict[str, str] | None = None,
        created_at: datetime | None = None,
        source: str = SOURCE_UI,
        link_id: str | None = None,
    ) -> str:
        """A meeting as if logged in HubSpot's UI (``source``); fires creation webhooks."""
        props: dict[str, str] = {
            "hs_meeting_title": title,
            "hs_meeting_start_time": format_time(aware(start)),
            "hs_meeting_end_time": format_time(aware(end)),
            "hs_timestamp": format_time(aware(start)),
            "hs_meeting_outcome": outcome,
        }
        for key, value in (
            ("hs_meeting_external_url", external_url),
            ("hubspot_owner_id", owner_id),
            ("hs_meeting_location", location),
            ("hs_meeting_body", body),
        ):
            if value is not None:
                props[key] = value
        props |= self.normalise(extra or {})
        if props["hs_meeting_outcome"] not in OUTCOMES:
            raise HubSpotApiError(400, "VALIDATION_ERROR", f"Invalid outcome {outcome!r}.")
        with self._lock:
            contacts = []
            if attendee_email:
                contacts.append(self.contact_for(attendee_email, attendee_firstname, attendee_lastname).id)
            return self.insert_meeting(
                props, contacts=contacts, created_at=created_at, source=source, link_id=link_id
            ).id

    def insert_meeting(
        self,
        properties: dict[str, str],
        *,
        contacts: Iterable[str] = (),
        created_at: datetime | None = None,
        source: str = SOURCE_UI,
        link_id: str | None = None,
    ) -> HubSpotMeeting:
        """Store a meeting with already normalised properties; fires creation webhooks."""
        with self._lock:
            stamp = aware(created_at or self.now())
            meeting = HubSpotMeeting(
                self._new_meeting_id(), dict(properties), stamp, stamp, list(contacts), link_id=link_id
            )
            self._meetings[meeting.id] = meeting
            self._notify_creation(meeting, source)
            return meeting

    def update_meeting(
        self,
        meeting_id: str,
        properties: dict[str, Any],
        *,
        source: str = SOURCE_UI,
        updated_at: datetime | None = None,
    ) -> HubSpotMeeting:
        """Set (or with ``""`` clear) properties; fires a propertyChange per changed value."""
        with self._lock:
            meeting = self._live(meeting_id)
            values = self.normalise(properties)
            changed = {}
            for key, value in values.items():
                if meeting.properties.get(key, "") != value:
                    changed[key] = value
                    if value == "":
                        meeting.properties.pop(key, None)
                    else:
                        meeting.properties[key] = value
            if changed:
                meeting.updated_at = aware(updated_at or self.now())
                self._notify_changes(meeting, changed, source)
            return meeting

    def reschedule(
        self, meeting_id: str, start: datetime, end: datetime, *, source: str = SOURCE_UI
    ) -> HubSpotMeeting:
        return self.update_meeting(
            meeting_id,
            {
                "hs_meeting_start_time": format_time(aware(start)),
                "hs_meeting_end_time": format_time(aware(end)),
                "hs_timestamp": format_time(aware(start)),
                "hs_meeting_outcome": "RESCHEDULED",
            },
            source=source,
        )

    def cancel(self, meeting_id: str, *, source: str = SOURCE_UI) -> HubSpotMeeting:
        return self.update_meeting(meeting_id, {"hs_meeting_outcome": "CANCELED"}, source=source)

    def archive(self, meeting_id: str, *, source: str = SOURCE_UI) -> None:
        """Move to the recycling bin; a meeting already archived stays so, silently."""
        with self._lock:
            meeting = self.get(meeting_id)
            if meeting.archived:
                return
            meeting.archived_at = self.now()
            meeting.updated_at = meeting.archived_at
            self._notify(meeting, [{"subscriptionType": "object.deletion", "changeFlag": "DELETED"}], source)

    def get(self, meeting_id: str) -> HubSpotMeeting:
        with self._lock:
            try:
                return self._meetings[meeting_id]
            except KeyError:
                raise UnknownMeetingError(meeting_id) from None

    def _live(self, meeting_id: str) -> HubSpotMeeting:
        meeting = self.get(meeting_id)
        if meeting.archived:
            raise UnknownMeetingError(meeting_id)
        return meeting

    def meetings(self, *, archived: bool | None = None) -> list[HubSpotMeeting]:
        """Meetings in list-API order (ascending numeric id); `archived` None means all."""
        with self._lock:
            return [
                m
                for m in sorted(self._meetings.values(), key=lambda m: int(m.id))
                if archived is None or m.archived == archived
            ]

    def normalise(self, properties: dict[str, Any]) -> dict[str, str]:
        """Validate writable properties and bring dates to the stored format."""
        errors = []
        out: dict[str, str] = {}
        for key, raw in properties.items():
            if key in SYSTEM_PROPERTIES:
                errors.append(
                    {
                        "message": f"{key} is a read only property; its value cannot be set.",
                        "code": "READ_ONLY_VALUE",
                        "in": key,
                    }
                )
                continue
            if key not in WRITABLE_PROPERTIES:
                errors.append(
                    {
                        "message": f'Property "{key}" does not exist',
                        "code": "PROPERTY_DOESNT_EXIST",
                        "in": key,
                        "context": {"propertyName": [key]},
                    }
                )
                continue
            value = "" if raw is None else str(raw)
            if value and key in DATE_PROPERTIES:
                try:
                    value = format_time(parse_time(value))
                except ValueError:
                    errors.append(
                        {
                            "message": f"{value!r} is not a valid date-time for {key}.",
                            "code": "INVALID_DATE",
                            "in": key,
                        }
                    )
                    continue
            if value and key == "hs_meeting_outcome" and value not in OUTCOMES:
                errors.append(
                    {
                        "message": f"{value} was not one of the allowed options: {', '.join(OUTCOMES)}",
                        "code": "INVALID_OPTION",
                        "in": key,
                    }
                )
                continue
            out[key] = value
        if errors:
            raise HubSpotApiError(
                400,
                "VALIDATION_ERROR",
                "Property values were not valid: " + "; ".join(e["message"] for e in errors),
                errors=errors,
            )
        return out
