"""The HubSpot simulator's state: CRM meetings, contacts, users, meeting links and webhook
subscriptions, in memory, with the wire constants and time formats they are read and written in.

Over 400 lines for a reason: `HubSpotState` is one lock-guarded store whose methods are the
simulator's whole behaviour (CRM writes, the scheduler's slots and booking, webhook fan-out); split
further, each part would reach into the others' fields under the same lock.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bookingsync.sandbox.clock import aware, parse_iso, utc_now
from bookingsync.sandbox.errors import SandboxError, UnknownMeetingError
from bookingsync.sandbox.faults import Fault, FaultQueue
from bookingsync.sandbox.request_log import RequestLog

from .webhooks import (
    Batch,
    DeliveryAttempt,
    WebhookSender,
    new_delivery_id,
    signed_headers,
)

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


class HubSpotState:
    """Everything the simulator holds; every method is safe to call from any thread."""

    def __init__(
        self,
        *,
        now: Callable[[], datetime] | None = None,
        tokens: dict[str, Iterable[str]] | None = None,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        app_id: int = DEFAULT_APP_ID,
        portal_id: int = DEFAULT_PORTAL_ID,
        webhook_target_url: str | None = None,
    ) -> None:
        self.now = now or utc_now
        self.client_secret = client_secret
        self.app_id = app_id
        self.portal_id = portal_id
        self.webhook_target_url = webhook_target_url
        self.max_concurrent_requests = 10
        self.settings_created_at: datetime | None = None
        # settings (see control.py for the HTTP view)
        self.duplicate_deliveries = 0
        self.retry_failed = 0
        self.retry_delay_seconds = 0.0
        self.timestamp_offset_ms = 0
        self.duration_unit = "milliseconds"
        self.search_requires_all_fields = True
        self.property_changes_on_creation = True
        self.rate_limit_per_ten_seconds: int | None = None
        self.faults = FaultQueue()
        self.requests = RequestLog()
        self._lock = threading.RLock()
        self._tokens = {t: frozenset(s) for t, s in (tokens or {DEFAULT_TOKEN: ALL_SCOPES}).items()}
        self._meetings: dict[str, HubSpotMeeting] = {}
        self._contacts: dict[str, Contact] = {}
        self._users: dict[str, HostUser] = {}
        self._links: dict[str, MeetingLink] = {}
        self._subscriptions: dict[int, Subscription] = {}
        self._calls: dict[str, list[datetime]] = {}
        self._next_id = 48_213_000_001
        self._next_contact = 901
        self._next_event = 1_000_000_001
        self._next_subscription = 400_001
        self._sender = WebhookSender(self._sign, lambda: self.retry_delay_seconds)
        host = self.add_user("7001", "riley.host@sandbox-hubspot.example", "Riley", "Host")
        self.add_link(DEFAULT_LINK_SLUG, "Intro call", [host.user_id], link_id=DEFAULT_LINK_ID)

    # -- credentials and rate limit ---------------------------------------------------------

    def add_token(self, token: str, scopes: Iterable[str]) -> None:
        with self._lock:
            self._tokens[token] = frozenset(scopes)

    def scopes_for(self, token: str) -> frozenset[str] | None:
        with self._lock:
            return self._tokens.get(token)

    def allow_request(self, token: str) -> bool:
        """A rolling ten-second window per token, when `rate_limit_per_ten_seconds` is set."""
        with self._lock:
            if self.rate_limit_per_ten_seconds is None:
                return True
            now = self.now()
            recent = [t for t in self._calls.get(token, []) if now - t < timedelta(seconds=10)]
            allowed = len(recent) < self.rate_limit_per_ten_seconds
            if allowed:
                recent.append(now)
            self._calls[token] = recent
            return allowed

    # -- ids --------------------------------------------------------------------------------

    def _new_meeting_id(self) -> str:
        self._next_id += 1 + secrets.randbelow(97)  # increasing, with gaps
        return str(self._next_id)

    # -- contacts ---------------------------------------------------------------------------

    def contact_for(self, email: str, firstname: str = "", lastname: str = "") -> Contact:
        """The contact with `email` (case-insensitive), created on first use."""
        with self._lock:
            for contact in self._contacts.values():
                if contact.email.lower() == email.lower():
                    return contact
            self._next_contact += 1 + secrets.randbelow(13)
            contact = Contact(str(self._next_contact), email, firstname, lastname, self.now())
            self._contacts[contact.id] = contact
            return contact

    def contact(self, contact_id: str) -> Contact | None:
        with self._lock:
            return self._contacts.get(contact_id)

    # -- meetings ---------------------------------------------------------------------------

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

    # -- users, links and availability -------------------------------------------------------

    def add_user(self, user_id: str, email: str, first_name: str, last_name: str) -> HostUser:
        with self._lock:
            user = HostUser(user_id, email, first_name, last_name)
            self._users[user_id] = user
            return user

    def add_link(
        self, slug: str, name: str, user_ids: list[str], *, link_id: str | None = None, **settings: Any
    ) -> MeetingLink:
        with self._lock:
            unknown = [u for u in user_ids if u not in self._users]
            if unknown or not user_ids:
                raise SandboxError(f"A link needs known users; unknown: {unknown}.")
            if "timezone" in settings:
                zone(settings["timezone"])
            if settings.get("start_increment", "MEETING_DURATION") not in INCREMENTS:
                raise SandboxError(f"start_increment must be one of {sorted(INCREMENTS)}.")
            link = MeetingLink(
                link_id or str(8_123_456 + 17 * len(self._links)),
                slug,
                name,
                user_ids[0],
                list(user_ids),
                self.now(),
                default_link=not self._links,
                **settings,
            )
            self._links[slug] = link
            return link

    def link(self, slug: str) -> MeetingLink | None:
        with self._lock:
            return self._links.get(slug)

    def links(self) -> list[MeetingLink]:
        with self._lock:
            return list(self._links.values())

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

    def users_of(self, link: MeetingLink) -> list[HostUser]:
        with self._lock:
            return [self._users[u] for u in link.user_ids]

    # -- booking ----------------------------------------------------------------------------

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

    # -- webhooks ---------------------------------------------------------------------------

    def subscribe(
        self,
        event_type: str,
        property_name: str | None = None,
        *,
        active: bool = True,
        object_type_id: str = MEETINGS_OBJECT_TYPE_ID,
    ) -> Subscription:
        if event_type not in EVENT_TYPES:
            raise SandboxError(f"The simulator sends only {', '.join(EVENT_TYPES)}.")
        if event_type == "object.propertyChange" and not property_name:
            raise SandboxError("An object.propertyChange subscription needs a propertyName.")
        with self._lock:
            self._next_subscription += 1 + secrets.randbelow(5)
            sub = Subscription(
                self._next_subscription,
                event_type,
                self.now(),
                property_name if event_type == "object.propertyChange" else None,
                object_type_id,
                active,
            )
            self._subscriptions[sub.id] = sub
            return sub

    def subscribe_meetings(
        self, properties: Iterable[str] = DEFAULT_SUBSCRIBED_PROPERTIES
    ) -> list[Subscription]:
        """Creation, deletion and a propertyChange subscription per property."""
        subs = [self.subscribe("object.creation"), self.subscribe("object.deletion")]
        return subs + [self.subscribe("object.propertyChange", p) for p in properties]

    def subscriptions(self) -> list[Subscription]:
        with self._lock:
            return sorted(self._subscriptions.values(), key=lambda s: s.id)

    def subscription(self, subscription_id: int) -> Subscription | None:
        with self._lock:
            return self._subscriptions.get(subscription_id)

    def set_subscription_active(self, subscription_id: int, active: bool) -> Subscription | None:
        with self._lock:
            sub = self._subscriptions.get(subscription_id)
            if sub is not None:
                sub.active, sub.updated_at = active, self.now()
            return sub

    def unsubscribe(self, subscription_id: int) -> bool:
        with self._lock:
            return self._subscriptions.pop(subscription_id, None) is not None

    def deliveries(self) -> list[DeliveryAttempt]:
        return self._sender.attempts()

    def flush_deliveries(self, timeout: float = 10.0) -> bool:
        return self._sender.flush(timeout)

    def resend(self, delivery_id: str) -> None:
        """Send a recorded batch again with attemptNumber one above its last attempt."""
        attempts = [a for a in self.deliveries() if a.delivery_id == delivery_id]
        if not attempts:
            raise SandboxError(f"No delivery {delivery_id!r} was recorded.")
        last = max(attempts, key=lambda a: a.attempt_number)
        self._sender.send(
            Batch(delivery_id, last.target_url, json.loads(last.body), attempt_number=last.attempt_number + 1)
        )

    def close(self) -> None:
        self._sender.close()

    def _sign(self, url: str, body: bytes) -> dict[str, str]:
        timestamp = to_millis(self.now()) + self.timestamp_offset_ms
        return signed_headers(self.client_secret, url, body, timestamp)

    def _notify_creation(self, meeting: HubSpotMeeting, source: str) -> None:
        events: list[dict[str, Any]] = [{"subscriptionType": "object.creation", "changeFlag": "NEW"}]
        if self.property_changes_on_creation:
            events += self._property_events(meeting.all_properties())
        self._notify(meeting, events, source)

    def _notify_changes(self, meeting: HubSpotMeeting, changed: dict[str, str], source: str) -> None:
        self._notify(meeting, self._property_events(changed), source)

    @staticmethod
    def _property_events(values: dict[str, str]) -> list[dict[str, Any]]:
        return [
            {"subscriptionType": "object.propertyChange", "propertyName": k, "propertyValue": v}
            for k, v in values.items()
        ]

    def _notify(self, meeting: HubSpotMeeting, events: list[dict[str, Any]], source: str) -> None:
        """Match `events` to active subscriptions and queue one batch."""
        if not self.webhook_target_url:
            return
        stamp = to_millis(meeting.updated_at)
        batch = []
        for template in events:
            for sub in self.subscriptions():
                if (
                    not sub.active
                    or sub.event_type != template["subscriptionType"]
                    or sub.object_type_id != MEETINGS_OBJECT_TYPE_ID
                ):
                    continue
                if sub.property_name and sub.property_name != template.get("propertyName"):
                    continue
                self._next_event += 1 + secrets.randbelow(7)
                event = {
                    "eventId": self._next_event,
                    "subscriptionId": sub.id,
                    "portalId": self.portal_id,
                    "appId": self.app_id,
                    "occurredAt": stamp,
                    "subscriptionType": template["subscriptionType"],
                    "attemptNumber": 0,
                    "objectId": int(meeting.id),
                    "objectTypeId": MEETINGS_OBJECT_TYPE_ID,
                    "changeSource": source,
                    "isSensitive": False,
                }
                if source == SOURCE_UI:
                    event["sourceId"] = "userId:7001"
                event |= {k: v for k, v in template.items() if k != "subscriptionType"}
                batch.append(event)
        if batch:
            self._sender.send(
                Batch(
                    new_delivery_id(),
                    self.webhook_target_url,
                    batch,
                    retries_left=self.retry_failed,
                    duplicates_left=self.duplicate_deliveries,
                )
            )

    # -- faults -----------------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        self.faults.add(fault)


# -- HTTP ---------------------------------------------------------------------------------------
