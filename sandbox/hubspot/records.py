"""HubSpot's wire records and constants: CRM meetings, contacts, host users, meeting links and
webhook subscriptions as the simulator holds them, the paths, scopes, limits and time formats,
and the API error the state raises."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bookingsync.sandbox.clock import aware, parse_iso
from bookingsync.sandbox.errors import SandboxError

API_VERSION = "2026-03"
MEETINGS_PATH = f"/crm/objects/{API_VERSION}/meetings"
CONTACTS_PATH = f"/crm/objects/{API_VERSION}/contacts"
LINKS_PATH = f"/scheduler/{API_VERSION}/meetings/meeting-links"
BOOK_PATH = f"{LINKS_PATH}/book"
WEBHOOKS_PATH = f"/webhooks/{API_VERSION}"
PUBLIC_BASE_URL = "https://api.hubapi.com"

DEFAULT_TOKEN = "pat-na1-sandbox-0000-0000-000000000000"
DEFAULT_CLIENT_SECRET = "0f3c8a52-6b1d-4e7a-9c2e-5d8b7a4f1e90"
DEFAULT_APP_ID = 54321
DEFAULT_PORTAL_ID = 62515
DEFAULT_LINK_SLUG = "sandbox-intro"
DEFAULT_LINK_ID = "8123456"
DEFAULT_TIMEZONE = "America/New_York"
MEETINGS_OBJECT_TYPE_ID = "0-47"
CONTACT_ASSOCIATION_TYPE = "meeting_event_to_contact"

SCOPE_CRM_READ = "crm.objects.contacts.read"
SCOPE_CRM_WRITE = "crm.objects.contacts.write"
SCOPE_LINKS_READ = "scheduler.meetings.meeting-link.read"
SCOPE_BOOK = "meetings-write"
SCOPE_DEV_READ = "developers-read"
SCOPE_DEV_WRITE = "developers-write"
ALL_SCOPES = (SCOPE_CRM_READ, SCOPE_CRM_WRITE, SCOPE_LINKS_READ, SCOPE_BOOK, SCOPE_DEV_READ, SCOPE_DEV_WRITE)

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
MAX_SEARCH_LIMIT = 200
OUTCOMES = ("SCHEDULED", "COMPLETED", "RESCHEDULED", "NO_SHOW", "CANCELED")
SYSTEM_PROPERTIES = ("hs_createdate", "hs_lastmodifieddate", "hs_object_id")
DATE_PROPERTIES = frozenset(
    {"hs_meeting_start_time", "hs_meeting_end_time", "hs_timestamp", "hs_createdate", "hs_lastmodifieddate"}
)
# The meeting properties the provided specs name; anything else is "doesn't exist".
WRITABLE_PROPERTIES = frozenset(
    "hs_activity_type hs_attachment_ids hs_attendee_owner_ids hs_engagement_source "
    "hs_engagement_source_id hs_include_description_in_reminder hs_internal_meeting_notes "
    "hs_meeting_body hs_meeting_end_time hs_meeting_external_url hs_meeting_location "
    "hs_meeting_location_type hs_meeting_outcome hs_meeting_start_time hs_meeting_title "
    "hs_timestamp hs_unique_id hubspot_owner_id".split()
)
DEFAULT_SUBSCRIBED_PROPERTIES = (
    "hs_meeting_title",
    "hs_meeting_start_time",
    "hs_meeting_end_time",
    "hs_meeting_outcome",
    "hs_meeting_external_url",
)
EVENT_TYPES = ("object.creation", "object.propertyChange", "object.deletion")
SLOT_UNAVAILABLE = "MeetingsBookingError.TIME_SLOT_UNAVAILABLE"
INCREMENTS = {
    "FIVE": 5,
    "TEN": 10,
    "FIFTEEN": 15,
    "TWENTY": 20,
    "THIRTY": 30,
    "FORTY_FIVE": 45,
    "SIXTY": 60,
    "NINETY": 90,
    "ONE_HUNDRED_TWENTY": 120,
    "MEETING_DURATION": None,
}
WEEKDAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
RATE_LIMIT_MAX = 100
RATE_LIMIT_INTERVAL_MS = 10_000
DAILY_LIMIT = 250_000
SOURCE_UI, SOURCE_API, SOURCE_BOOKING = "CRM_UI", "API", "MEETINGS"


def format_time(value: datetime) -> str:
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def to_millis(value: datetime) -> int:
    return int(aware(value).timestamp() * 1000)


def from_millis(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def parse_time(text: str) -> datetime:
    """Epoch milliseconds (all digits) or ISO 8601 (no offset → UTC)."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return from_millis(int(text))
    return parse_iso(text)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise SandboxError(f"Unknown timezone {name!r}.") from exc


class HubSpotApiError(SandboxError):
    """A provider-side refusal; the app renders it as HubSpot's error envelope."""

    def __init__(
        self,
        status: int,
        category: str,
        message: str,
        *,
        sub_category: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        context: dict[str, list[str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.category, self.message = status, category, message
        self.sub_category, self.errors, self.context = sub_category, errors, context


@dataclass
class HubSpotMeeting:
    id: str
    properties: dict[str, str]
    created_at: datetime
    updated_at: datetime
    contact_ids: list[str] = field(default_factory=list)
    archived_at: datetime | None = None
    link_id: str | None = None  # set when booked through a meeting link

    @property
    def archived(self) -> bool:
        return self.archived_at is not None

    def all_properties(self) -> dict[str, str]:
        return {
            **self.properties,
            "hs_createdate": format_time(self.created_at),
            "hs_lastmodifieddate": format_time(self.updated_at),
            "hs_object_id": self.id,
        }

    def resource(
        self, properties: Iterable[str] | None = None, associations: Iterable[str] = ()
    ) -> dict[str, Any]:
        """The ``SimplePublicObjectWithAssociations`` shape."""
        every = self.all_properties()
        wanted = set(SYSTEM_PROPERTIES) | set(properties or ())
        data: dict[str, Any] = {
            "id": self.id,
            "properties": {k: v for k, v in every.items() if k in wanted},
            "createdAt": format_time(self.created_at),
            "updatedAt": format_time(self.updated_at),
            "archived": self.archived,
        }
        if self.archived_at is not None:
            data["archivedAt"] = format_time(self.archived_at)
        if "contacts" in set(associations) and self.contact_ids:
            data["associations"] = {
                "contacts": {
                    "results": [{"id": c, "type": CONTACT_ASSOCIATION_TYPE} for c in self.contact_ids]
                }
            }
        return data

    def is_live(self) -> bool:
        return not self.archived and self.properties.get("hs_meeting_outcome") != "CANCELED"

    def span(self) -> tuple[datetime, datetime] | None:
        try:
            return (
                parse_time(self.properties["hs_meeting_start_time"]),
                parse_time(self.properties["hs_meeting_end_time"]),
            )
        except (KeyError, ValueError):
            return None


@dataclass
class Contact:
    id: str
    email: str
    firstname: str
    lastname: str
    created_at: datetime

    def resource(self) -> dict[str, Any]:
        stamp = format_time(self.created_at)
        return {
            "id": self.id,
            "properties": {
                "email": self.email,
                "firstname": self.firstname,
                "lastname": self.lastname,
                "hs_object_id": self.id,
                "createdate": stamp,
                "lastmodifieddate": stamp,
            },
            "createdAt": stamp,
            "updatedAt": stamp,
            "archived": False,
        }


@dataclass
class HostUser:
    user_id: str
    email: str
    first_name: str
    last_name: str
    calendar_provider: str = "GOOGLE"
    busy: list[tuple[datetime, datetime]] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        return {
            "id": f"mu-{self.user_id}",
            "userId": self.user_id,
            "calendarProvider": self.calendar_provider,
            "isSalesStarter": False,
            "userProfile": {
                "email": self.email,
                "firstName": self.first_name,
                "lastName": self.last_name,
                "fullName": f"{self.first_name} {self.last_name}",
            },
        }


@dataclass
class MeetingLink:
    id: str
    slug: str
    name: str
    organizer_user_id: str
    user_ids: list[str]
    created_at: datetime
    link_type: str = "PERSONAL_LINK"
    timezone: str = DEFAULT_TIMEZONE
    durations_ms: list[int] = field(default_factory=lambda: [30 * 60_000, 60 * 60_000])
    weekly_hours: dict[int, list[tuple[int, int]]] = field(
        default_factory=lambda: {d: [(9 * 60, 17 * 60)] for d in range(5)}
    )
    start_increment: str = "MEETING_DURATION"
    buffer_ms: int = 0
    weeks_to_advertise: int = 2
    location: str = "Zoom"
    default_link: bool = True

    def metadata(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "slug": self.slug,
            "name": self.name,
            "link": f"https://meetings.hubspot.com/{self.slug}",
            "type": self.link_type,
            "organizerUserId": self.organizer_user_id,
            "userIdsOfLinkMembers": list(self.user_ids),
            "defaultLink": self.default_link,
            "createdAt": format_time(self.created_at),
            "updatedAt": format_time(self.created_at),
        }


@dataclass
class Subscription:
    id: int
    event_type: str
    created_at: datetime
    property_name: str | None = None
    object_type_id: str = MEETINGS_OBJECT_TYPE_ID
    active: bool = True
    updated_at: datetime | None = None

    def public(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "eventType": self.event_type,
            "objectTypeId": self.object_type_id,
            "active": self.active,
            "createdAt": format_time(self.created_at),
        }
        if self.property_name:
            data["propertyName"] = self.property_name
        if self.updated_at:
            data["updatedAt"] = format_time(self.updated_at)
        return data
