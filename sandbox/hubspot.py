"""HubSpot simulator: CRM meetings, the scheduler booking API and app webhooks, in memory.

Written only from HubSpot's developer documentation: the CRM Meetings, Scheduler Meetings and
Webhooks 2026-03 OpenAPI references (https://developers.hubspot.com/docs/api-reference),
"Validating requests from HubSpot" (https://developers.hubspot.com/docs/api/webhooks/validating-requests)
and the error handling and usage pages. Every
response body conforms to the schema those OpenAPI files give for it (the error envelope is the
``Error`` schema of the ``default`` response). Deliveries live in `hubspot_webhooks`, the control
API in `hubspot_control`.

Provider surface (``create_app``), ``Authorization: Bearer <token>``:

* ``GET /crm/objects/2026-03/meetings`` (``limit`` default 10, 1..100; ``after``; ``properties``;
  ``associations``; ``archived``) → ``{"results": [...], "paging": {"next": {"after", "link"}}}``,
  ``paging`` only when there is a next page. ``GET|PATCH|DELETE .../meetings/{meetingId}``,
  ``POST .../meetings`` (create), ``POST .../meetings/search``.
* ``GET /crm/objects/2026-03/contacts/{contactId}``: an extension (see attendees, below).
* ``GET /scheduler/2026-03/meetings/meeting-links``, ``GET .../meeting-links/book/{slug}``,
  ``GET .../meeting-links/book/availability-page/{slug}``, ``POST .../meeting-links/book``.
* ``GET|POST /webhooks/2026-03/{appId}/subscriptions``, ``GET|PATCH|DELETE
  .../subscriptions/{subscriptionId}``, ``GET|PUT|DELETE /webhooks/2026-03/{appId}/settings``.

Errors: ``{"status": "error", "message", "correlationId" (uuid), "category", "subCategory"?,
"errors"?: [{"message", "in"?, "code"?}], "context"?}``: 400 ``VALIDATION_ERROR``, 401
``INVALID_AUTHENTICATION``, 403 ``MISSING_SCOPES``, 404 ``OBJECT_NOT_FOUND``, 429 ``RATE_LIMITS``,
500 ``INTERNAL_ERROR``. ``status`` is not in the schema but the schema allows extra properties.

Ambiguities, and how they are resolved:

* **429**: no file documents the body. The simulator answers HubSpot's rate-limit shape made to
  satisfy the ``Error`` schema: ``{"status": "error", "message": "You have reached your
  ten_secondly_rolling limit.", "errorType": "RATE_LIMIT", "correlationId", "policyName":
  "TEN_SECONDLY_ROLLING", "category": "RATE_LIMITS"}`` with the headers
  ``X-HubSpot-RateLimit-Interval-Milliseconds: 10000``, ``X-HubSpot-RateLimit-Max``,
  ``X-HubSpot-RateLimit-Remaining: 0`` and the changelog's ``X-HubSpot-RateLimit-Daily`` /
  ``-Daily-Remaining``. No ``Retry-After`` (undocumented) unless a fault sets ``retry_after``.
  ``rate_limit_per_ten_seconds`` (off by default) enforces "100 calls per 10 seconds" for real.
* **Property values** are strings (the schema). Date-time properties are ISO 8601 UTC with
  milliseconds (``2030-05-06T12:00:00.000Z``); writes accept ISO 8601 or epoch milliseconds.
  Without ``properties`` only ``hs_createdate``, ``hs_lastmodifieddate`` and ``hs_object_id``
  come back; those three always come back. A requested property the meeting has no value for is
  left out (the spec: "will be ignored"), never ``null`` (the schema allows only strings).
* **Paging** lists meetings by ascending numeric id; ``after`` is the id to resume at (opaque to
  clients). Ids are numeric strings with gaps, increasing with creation. ``archived=true`` lists
  archived meetings only. Search pages by offset (``after`` is an offset string), limit 1..200.
* **Search** needs every field the schema marks required (``after``, ``filterGroups``,
  ``limit``, ``properties``, ``sorts``) unless ``search_requires_all_fields`` is off; ``after``
  may be ``""`` for the first page. ``sorts`` items are strings per the schema (``"prop"`` or
  ``"-prop"`` for descending); HubSpot's object form ``{"propertyName", "direction"}`` is
  accepted too. Date filter values are epoch ms or ISO 8601; all operators of the enum work.
  Default order is by id.
* **PATCH** of an unknown property → 400 ``PROPERTY_DOESNT_EXIST``; of ``hs_createdate``,
  ``hs_lastmodifieddate``, ``hs_object_id`` → 400 ``READ_ONLY_VALUE``; an outcome outside
  ``SCHEDULED COMPLETED RESCHEDULED NO_SHOW CANCELED`` → 400 ``INVALID_OPTION``. An empty string
  clears a property. ``DELETE`` archives (204); deleting an archived meeting answers 204 again,
  an id never seen 404.
* **Attendees**: a meeting's attendee is a *contact association* (``associations=contacts`` →
  ``{"contacts": {"results": [{"id", "type": "meeting_event_to_contact"}]}}``), as HubSpot's
  booking creates it. Contacts are not in the provided specs, so ``GET
  /crm/objects/2026-03/contacts/{id}`` (properties ``email``, ``firstname``, ``lastname``, the
  generic CRM object shape) is served as a documented extension.
* **Booking**: every field the schema marks required (including ``formFields``,
  ``legalConsentResponses``, ``likelyAvailableUserIds``; empty arrays are fine) must be present,
  else 400 listing them in ``errors``. ``duration`` is **milliseconds** (the seed page and the
  link's ``durations``) though the OpenAPI description says minutes; ``duration_unit`` switches
  to ``minutes``. It must be one of the link's durations. The response echoes ``duration`` in
  the unit sent. A start that is not an offered slot (taken, off-grid, past, outside the
  advertised weeks) → 400 ``VALIDATION_ERROR`` / subCategory
  ``MeetingsBookingError.TIME_SLOT_UNAVAILABLE``; unknown slug → 404. The booking response has
  no CRM id, so the CRM meeting it creates stores ``calendarEventId`` in ``hs_unique_id``
  ("A unique identifier for the meeting event" in the scheduler spec), ``hs_engagement_source``
  ``MEETINGS_PUBLIC`` and ``hs_engagement_source_id`` the link id, and is associated with the
  booker's contact (``contactId``, created on first booking per email).
* **Availability**: the link's grid is weekly hours in the link's timezone (default Mon–Fri
  09:00–17:00 ``America/New_York``), starts every ``startTimeIncrementMinutes`` (default
  ``MEETING_DURATION``), minus busy times (configured per user, and every live meeting booked on
  the link, with ``meetingBufferTime`` either side) and minus the past; ``weeksToAdvertise``
  (default 2) bounds it. ``monthOffset`` picks the calendar month (in the requested timezone)
  of now plus that many months; ``hasMore`` says slots exist after it.
  ``linkAvailabilityByDuration`` is keyed by the duration in ms as a string.
  ``customParams.availability`` maps weekday names (``MONDAY``…) to a ``{start, end}`` closed
  range in minutes after midnight (the day's first range). Busy times count against a meeting
  through ``hubspot_owner_id`` (a host's user id), so a meeting created in the UI for a host
  blocks their slots too.
* **Webhooks**: see `hubspot_webhooks`. Changes made through the control API carry
  ``changeSource: "CRM_UI"``, through the CRM API ``"API"``, through a booking ``"MEETINGS"``.
  A creation also sends ``object.propertyChange`` for each subscribed property that got a value
  (switch off with ``property_changes_on_creation``). Cancel = outcome ``CANCELED`` (a property
  change), archive = ``object.deletion``. One change → one batch (a JSON array).
* A ``malformed`` fault adds one meeting to a CRM listing page whose ``hs_meeting_start_time``
  is ``"not-a-date"``; a ``mutate`` fault's ``offset`` is the index in the full ordered list of
  the page's first record.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from bookingsync.sandbox.answer_faults import install_answer_faults
from bookingsync.sandbox.clock import aware, utc_now
from bookingsync.sandbox.errors import SandboxError, UnknownMeetingError
from bookingsync.sandbox.faults import Fault, FaultQueue
from bookingsync.sandbox.hubspot_webhooks import (
    Batch,
    DeliveryAttempt,
    WebhookSender,
    new_delivery_id,
    signed_headers,
)
from bookingsync.sandbox.request_log import RequestLog, install_request_log

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
ALL_SCOPES = (SCOPE_CRM_READ, SCOPE_CRM_WRITE, SCOPE_LINKS_READ, SCOPE_BOOK, SCOPE_DEV_READ,
              SCOPE_DEV_WRITE)

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
MAX_SEARCH_LIMIT = 200
OUTCOMES = ("SCHEDULED", "COMPLETED", "RESCHEDULED", "NO_SHOW", "CANCELED")
SYSTEM_PROPERTIES = ("hs_createdate", "hs_lastmodifieddate", "hs_object_id")
DATE_PROPERTIES = frozenset({"hs_meeting_start_time", "hs_meeting_end_time", "hs_timestamp",
                             "hs_createdate", "hs_lastmodifieddate"})
# The meeting properties the provided specs name; anything else is "doesn't exist".
WRITABLE_PROPERTIES = frozenset(
    "hs_activity_type hs_attachment_ids hs_attendee_owner_ids hs_engagement_source "
    "hs_engagement_source_id hs_include_description_in_reminder hs_internal_meeting_notes "
    "hs_meeting_body hs_meeting_end_time hs_meeting_external_url hs_meeting_location "
    "hs_meeting_location_type hs_meeting_outcome hs_meeting_start_time hs_meeting_title "
    "hs_timestamp hs_unique_id hubspot_owner_id".split()
)
DEFAULT_SUBSCRIBED_PROPERTIES = ("hs_meeting_title", "hs_meeting_start_time",
                                 "hs_meeting_end_time", "hs_meeting_outcome",
                                 "hs_meeting_external_url")
EVENT_TYPES = ("object.creation", "object.propertyChange", "object.deletion")
SLOT_UNAVAILABLE = "MeetingsBookingError.TIME_SLOT_UNAVAILABLE"
INCREMENTS = {"FIVE": 5, "TEN": 10, "FIFTEEN": 15, "TWENTY": 20, "THIRTY": 30, "FORTY_FIVE": 45,
              "SIXTY": 60, "NINETY": 90, "ONE_HUNDRED_TWENTY": 120, "MEETING_DURATION": None}
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
    return aware(datetime.fromisoformat(text.replace("Z", "+00:00")))


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise SandboxError(f"Unknown timezone {name!r}.") from exc


class HubSpotApiError(SandboxError):
    """A provider-side refusal; the app renders it as HubSpot's error envelope."""

    def __init__(self, status: int, category: str, message: str, *,
                 sub_category: str | None = None, errors: list[dict[str, Any]] | None = None,
                 context: dict[str, list[str]] | None = None) -> None:
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
        return {**self.properties, "hs_createdate": format_time(self.created_at),
                "hs_lastmodifieddate": format_time(self.updated_at), "hs_object_id": self.id}

    def resource(self, properties: Iterable[str] | None = None,
                 associations: Iterable[str] = ()) -> dict[str, Any]:
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
            data["associations"] = {"contacts": {"results": [
                {"id": c, "type": CONTACT_ASSOCIATION_TYPE} for c in self.contact_ids]}}
        return data

    def is_live(self) -> bool:
        return not self.archived and self.properties.get("hs_meeting_outcome") != "CANCELED"

    def span(self) -> tuple[datetime, datetime] | None:
        try:
            return (parse_time(self.properties["hs_meeting_start_time"]),
                    parse_time(self.properties["hs_meeting_end_time"]))
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
        return {"id": self.id, "properties": {
            "email": self.email, "firstname": self.firstname, "lastname": self.lastname,
            "hs_object_id": self.id, "createdate": stamp, "lastmodifieddate": stamp},
            "createdAt": stamp, "updatedAt": stamp, "archived": False}


@dataclass
class HostUser:
    user_id: str
    email: str
    first_name: str
    last_name: str
    calendar_provider: str = "GOOGLE"
    busy: list[tuple[datetime, datetime]] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        return {"id": f"mu-{self.user_id}", "userId": self.user_id,
                "calendarProvider": self.calendar_provider, "isSalesStarter": False,
                "userProfile": {"email": self.email, "firstName": self.first_name,
                                "lastName": self.last_name,
                                "fullName": f"{self.first_name} {self.last_name}"}}


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
        default_factory=lambda: {d: [(9 * 60, 17 * 60)] for d in range(5)})
    start_increment: str = "MEETING_DURATION"
    buffer_ms: int = 0
    weeks_to_advertise: int = 2
    location: str = "Zoom"
    default_link: bool = True

    def metadata(self) -> dict[str, Any]:
        return {"id": self.id, "slug": self.slug, "name": self.name,
                "link": f"https://meetings.hubspot.com/{self.slug}", "type": self.link_type,
                "organizerUserId": self.organizer_user_id,
                "userIdsOfLinkMembers": list(self.user_ids), "defaultLink": self.default_link,
                "createdAt": format_time(self.created_at),
                "updatedAt": format_time(self.created_at)}


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
        data: dict[str, Any] = {"id": str(self.id), "eventType": self.event_type,
                                "objectTypeId": self.object_type_id, "active": self.active,
                                "createdAt": format_time(self.created_at)}
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
        # settings (see hubspot_control for the HTTP view)
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
        for key, value in (("hs_meeting_external_url", external_url),
                           ("hubspot_owner_id", owner_id), ("hs_meeting_location", location),
                           ("hs_meeting_body", body)):
            if value is not None:
                props[key] = value
        props |= self.normalise(extra or {})
        if props["hs_meeting_outcome"] not in OUTCOMES:
            raise HubSpotApiError(400, "VALIDATION_ERROR", f"Invalid outcome {outcome!r}.")
        with self._lock:
            contacts = []
            if attendee_email:
                contacts.append(self.contact_for(attendee_email, attendee_firstname,
                                                 attendee_lastname).id)
            return self.insert_meeting(props, contacts=contacts, created_at=created_at,
                                       source=source, link_id=link_id).id

    def insert_meeting(self, properties: dict[str, str], *, contacts: Iterable[str] = (),
                       created_at: datetime | None = None, source: str = SOURCE_UI,
                       link_id: str | None = None) -> HubSpotMeeting:
        """Store a meeting with already normalised properties; fires creation webhooks."""
        with self._lock:
            stamp = aware(created_at or self.now())
            meeting = HubSpotMeeting(self._new_meeting_id(), dict(properties), stamp, stamp,
                                     list(contacts), link_id=link_id)
            self._meetings[meeting.id] = meeting
            self._notify_creation(meeting, source)
            return meeting

    def update_meeting(self, meeting_id: str, properties: dict[str, Any], *,
                       source: str = SOURCE_UI, updated_at: datetime | None = None
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

    def reschedule(self, meeting_id: str, start: datetime, end: datetime, *,
                   source: str = SOURCE_UI) -> HubSpotMeeting:
        return self.update_meeting(meeting_id, {
            "hs_meeting_start_time": format_time(aware(start)),
            "hs_meeting_end_time": format_time(aware(end)),
            "hs_timestamp": format_time(aware(start)),
            "hs_meeting_outcome": "RESCHEDULED"}, source=source)

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
            self._notify(meeting, [{"subscriptionType": "object.deletion",
                                    "changeFlag": "DELETED"}], source)

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
            return [m for m in sorted(self._meetings.values(), key=lambda m: int(m.id))
                    if archived is None or m.archived == archived]

    def normalise(self, properties: dict[str, Any]) -> dict[str, str]:
        """Validate writable properties and bring dates to the stored format."""
        errors = []
        out: dict[str, str] = {}
        for key, raw in properties.items():
            if key in SYSTEM_PROPERTIES:
                errors.append({"message": f"{key} is a read only property; its value cannot "
                               "be set.", "code": "READ_ONLY_VALUE", "in": key})
                continue
            if key not in WRITABLE_PROPERTIES:
                errors.append({"message": f"Property \"{key}\" does not exist",
                               "code": "PROPERTY_DOESNT_EXIST", "in": key,
                               "context": {"propertyName": [key]}})
                continue
            value = "" if raw is None else str(raw)
            if value and key in DATE_PROPERTIES:
                try:
                    value = format_time(parse_time(value))
                except ValueError:
                    errors.append({"message": f"{value!r} is not a valid date-time for {key}.",
                                   "code": "INVALID_DATE", "in": key})
                    continue
            if value and key == "hs_meeting_outcome" and value not in OUTCOMES:
                errors.append({"message": f"{value} was not one of the allowed options: "
                               f"{', '.join(OUTCOMES)}", "code": "INVALID_OPTION", "in": key})
                continue
            out[key] = value
        if errors:
            raise HubSpotApiError(400, "VALIDATION_ERROR",
                                  "Property values were not valid: "
                                  + "; ".join(e["message"] for e in errors), errors=errors)
        return out

    # -- users, links and availability -------------------------------------------------------

    def add_user(self, user_id: str, email: str, first_name: str, last_name: str) -> HostUser:
        with self._lock:
            user = HostUser(user_id, email, first_name, last_name)
            self._users[user_id] = user
            return user

    def add_link(self, slug: str, name: str, user_ids: list[str], *, link_id: str | None = None,
                 **settings: Any) -> MeetingLink:
        with self._lock:
            unknown = [u for u in user_ids if u not in self._users]
            if unknown or not user_ids:
                raise SandboxError(f"A link needs known users; unknown: {unknown}.")
            if "timezone" in settings:
                zone(settings["timezone"])
            if settings.get("start_increment", "MEETING_DURATION") not in INCREMENTS:
                raise SandboxError(f"start_increment must be one of {sorted(INCREMENTS)}.")
            link = MeetingLink(link_id or str(8_123_456 + 17 * len(self._links)), slug, name,
                               user_ids[0], list(user_ids), self.now(),
                               default_link=not self._links, **settings)
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

    def slots(self, link: MeetingLink, duration_ms: int, start: datetime, end: datetime
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
    def _free_members(link: MeetingLink, busy: dict[str, list[tuple[datetime, datetime]]],
                      start: datetime, end: datetime, buffer: timedelta) -> list[str]:
        """Members free for [start, end) with `buffer` either side; a personal or group link
        needs all of them free (else none is returned), a round robin link any one."""
        free = [u for u in link.user_ids if not any(
            start - buffer < b_end and b_start < end + buffer for b_start, b_end in busy[u])]
        if link.link_type == "ROUND_ROBIN_CALENDAR" or len(free) == len(link.user_ids):
            return free
        return []

    def users_of(self, link: MeetingLink) -> list[HostUser]:
        with self._lock:
            return [self._users[u] for u in link.user_ids]

    # -- booking ----------------------------------------------------------------------------

    def book(self, slug: str, start: datetime, duration_ms: int, email: str, first_name: str,
             last_name: str, *, timezone: str | None = None, locale: str | None = None,
             form_fields: list[dict[str, str]] | None = None,
             legal_consent: list[dict[str, Any]] | None = None
             ) -> tuple[HubSpotMeeting, dict[str, Any]]:
        """Book through a link as the public booking page does; the CRM meeting and the answer."""
        with self._lock:
            link = self._links.get(slug)
            if link is None:
                raise HubSpotApiError(404, "OBJECT_NOT_FOUND",
                                      f"No meeting link with slug {slug!r} was found.")
            if duration_ms not in link.durations_ms:
                raise HubSpotApiError(
                    400, "VALIDATION_ERROR", f"Duration {duration_ms} is not offered by this "
                    f"link; offered: {link.durations_ms} (milliseconds).",
                    errors=[{"message": "Invalid duration.", "in": "duration"}])
            start = aware(start).astimezone(UTC)
            free = self.slots(link, duration_ms, start, start + timedelta(milliseconds=1))
            if not free or free[0][0] != start:
                raise HubSpotApiError(
                    400, "VALIDATION_ERROR", "The requested time slot is no longer available. "
                    "Please choose another time.", sub_category=SLOT_UNAVAILABLE,
                    errors=[{"message": "Time slot unavailable.", "in": "startTime",
                             "subCategory": SLOT_UNAVAILABLE}])
            end = start + timedelta(milliseconds=duration_ms)
            free = self._free_members(link, self.busy_times(link), start, end,
                                      timedelta(milliseconds=link.buffer_ms))
            host = self._users[link.organizer_user_id if link.organizer_user_id in free
                               else free[0]]
            event_id = secrets.token_hex(13)
            conference = f"https://zoom.us/j/{secrets.randbelow(10**10):010d}"
            subject = f"{first_name} {last_name} and {host.first_name} {host.last_name}"
            meeting_id = self.create_meeting(
                subject, start, end, external_url=conference, attendee_email=email,
                attendee_firstname=first_name, attendee_lastname=last_name,
                owner_id=host.user_id, location=link.location, source=SOURCE_BOOKING,
                link_id=link.id, extra={"hs_unique_id": event_id,
                                        "hs_engagement_source": "MEETINGS_PUBLIC",
                                        "hs_engagement_source_id": link.id},
            )
            meeting = self._meetings[meeting_id]
            validated = [
                {"name": "firstName", "label": "First name", "value": first_name,
                 "isCustom": False, "fieldType": "text"},
                {"name": "lastName", "label": "Last name", "value": last_name,
                 "isCustom": False, "fieldType": "text"},
                {"name": "email", "label": "Email", "value": email, "isCustom": False,
                 "fieldType": "text"},
            ] + [{"name": f["name"], "label": f["name"], "value": f["value"], "isCustom": True}
                 for f in form_fields or []]
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

    def subscribe(self, event_type: str, property_name: str | None = None, *,
                  active: bool = True, object_type_id: str = MEETINGS_OBJECT_TYPE_ID
                  ) -> Subscription:
        if event_type not in EVENT_TYPES:
            raise SandboxError(f"The simulator sends only {', '.join(EVENT_TYPES)}.")
        if event_type == "object.propertyChange" and not property_name:
            raise SandboxError("An object.propertyChange subscription needs a propertyName.")
        with self._lock:
            self._next_subscription += 1 + secrets.randbelow(5)
            sub = Subscription(self._next_subscription, event_type, self.now(),
                               property_name if event_type == "object.propertyChange" else None,
                               object_type_id, active)
            self._subscriptions[sub.id] = sub
            return sub

    def subscribe_meetings(self, properties: Iterable[str] = DEFAULT_SUBSCRIBED_PROPERTIES
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
        self._sender.send(Batch(delivery_id, last.target_url, json.loads(last.body),
                                attempt_number=last.attempt_number + 1))

    def close(self) -> None:
        self._sender.close()

    def _sign(self, url: str, body: bytes) -> dict[str, str]:
        timestamp = to_millis(self.now()) + self.timestamp_offset_ms
        return signed_headers(self.client_secret, url, body, timestamp)

    def _notify_creation(self, meeting: HubSpotMeeting, source: str) -> None:
        events: list[dict[str, Any]] = [{"subscriptionType": "object.creation",
                                         "changeFlag": "NEW"}]
        if self.property_changes_on_creation:
            events += self._property_events(meeting.all_properties())
        self._notify(meeting, events, source)

    def _notify_changes(self, meeting: HubSpotMeeting, changed: dict[str, str],
                        source: str) -> None:
        self._notify(meeting, self._property_events(changed), source)

    @staticmethod
    def _property_events(values: dict[str, str]) -> list[dict[str, Any]]:
        return [{"subscriptionType": "object.propertyChange", "propertyName": k,
                 "propertyValue": v} for k, v in values.items()]

    def _notify(self, meeting: HubSpotMeeting, events: list[dict[str, Any]], source: str
                ) -> None:
        """Match `events` to active subscriptions and queue one batch."""
        if not self.webhook_target_url:
            return
        stamp = to_millis(meeting.updated_at)
        batch = []
        for template in events:
            for sub in self.subscriptions():
                if (not sub.active or sub.event_type != template["subscriptionType"]
                        or sub.object_type_id != MEETINGS_OBJECT_TYPE_ID):
                    continue
                if sub.property_name and sub.property_name != template.get("propertyName"):
                    continue
                self._next_event += 1 + secrets.randbelow(7)
                event = {"eventId": self._next_event, "subscriptionId": sub.id,
                         "portalId": self.portal_id, "appId": self.app_id, "occurredAt": stamp,
                         "subscriptionType": template["subscriptionType"], "attemptNumber": 0,
                         "objectId": int(meeting.id), "objectTypeId": MEETINGS_OBJECT_TYPE_ID,
                         "changeSource": source, "isSensitive": False}
                if source == SOURCE_UI:
                    event["sourceId"] = "userId:7001"
                event |= {k: v for k, v in template.items() if k != "subscriptionType"}
                batch.append(event)
        if batch:
            self._sender.send(Batch(new_delivery_id(), self.webhook_target_url, batch,
                                    retries_left=self.retry_failed,
                                    duplicates_left=self.duplicate_deliveries))

    # -- faults -----------------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        self.faults.add(fault)


# -- HTTP ---------------------------------------------------------------------------------------


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def error_body(category: str, message: str, *, sub_category: str | None = None,
               errors: list[dict[str, Any]] | None = None,
               context: dict[str, list[str]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"status": "error", "message": message,
                            "correlationId": str(uuid.uuid4()), "category": category}
    if sub_category:
        body["subCategory"] = sub_category
    if errors:
        body["errors"] = errors
    if context:
        body["context"] = context
    return body


def _error(status: int, category: str, message: str, headers: dict[str, str] | None = None,
           **extra: Any) -> JSONResponse:
    return JSONResponse(error_body(category, message, **extra), status, headers=headers)


def _api_error(exc: HubSpotApiError) -> JSONResponse:
    return _error(exc.status, exc.category, exc.message, sub_category=exc.sub_category,
                  errors=exc.errors, context=exc.context)


def rate_limited(retry_after: int | None = None) -> JSONResponse:
    body = error_body("RATE_LIMITS", "You have reached your ten_secondly_rolling limit.")
    body |= {"errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"}
    headers = {"X-HubSpot-RateLimit-Interval-Milliseconds": str(RATE_LIMIT_INTERVAL_MS),
               "X-HubSpot-RateLimit-Max": str(RATE_LIMIT_MAX),
               "X-HubSpot-RateLimit-Remaining": "0",
               "X-HubSpot-RateLimit-Daily": str(DAILY_LIMIT),
               "X-HubSpot-RateLimit-Daily-Remaining": str(DAILY_LIMIT - 1)}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return JSONResponse(body, 429, headers=headers)


def _validation(message: str, errors: list[dict[str, Any]] | None = None) -> _Refused:
    return _Refused(_error(400, "VALIDATION_ERROR", message, errors=errors))


def _authorize(state: HubSpotState, request: Request, scopes: tuple[str, ...]) -> None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    granted = state.scopes_for(token) if scheme.lower() == "bearer" and token else None
    if granted is None:
        message = ("Authentication credentials not found. This API supports OAuth 2.0 "
                   "authentication and you can find more details at "
                   "https://developers.hubspot.com/docs/methods/auth/oauth-overview"
                   if not token else "The access token provided is invalid or has expired.")
        raise _Refused(_error(401, "INVALID_AUTHENTICATION", message))
    if not granted.intersection(scopes):
        raise _Refused(_error(
            403, "MISSING_SCOPES", "This app hasn't been granted all required scopes to make "
            "this call.", errors=[{"message": "One or more of the following scopes are required.",
                                   "context": {"requiredGranularScopes": list(scopes)}}]))
    if not state.allow_request(token):
        raise _Refused(rate_limited())


async def _before(state: HubSpotState, request: Request, *scopes: str, listing: bool = False
                  ) -> Fault | None:
    _authorize(state, request, scopes)
    fault = state.faults.take_before(request.method, request.url.path, listing=listing)
    if fault is None:
        return None
    if fault.kind == "delay":
        await asyncio.sleep(fault.seconds)
        return None
    if fault.kind == "429":
        raise _Refused(rate_limited(fault.retry_after))
    if fault.kind == "500":
        raise _Refused(_error(500, "INTERNAL_ERROR", "internal error"))
    return fault


def _multi(request: Request, name: str) -> list[str]:
    """A form/explode array parameter: repeated and/or comma separated."""
    return [p.strip() for raw in request.query_params.getlist(name) for p in raw.split(",")
            if p.strip()]


def _int_param(raw: Any, name: str, default: int, low: int, high: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        value = None
    if value is None or isinstance(raw, bool) or not low <= value <= high:
        raise _validation(f"{name} must be an integer between {low} and {high}; got {raw!r}.",
                          [{"message": f"Invalid {name}.", "in": name}])
    return value


def _bool_param(raw: str | None, name: str) -> bool:
    if raw is None:
        return False
    if raw.lower() not in ("true", "false"):
        raise _validation(f"{name} must be true or false; got {raw!r}.")
    return raw.lower() == "true"


def _tz_param(request: Request) -> str:
    name = request.query_params.get("timezone")
    if not name:
        raise _validation("The timezone query parameter is required.",
                          [{"message": "Missing required parameter.", "in": "timezone"}])
    try:
        zone(name)
    except SandboxError:
        raise _validation(f"Unknown timezone {name!r}.",
                          [{"message": "Invalid timezone.", "in": "timezone"}]) from None
    return name


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise _validation("Invalid input JSON: the request body must be a JSON object.")
    return body


def _malformed(state: HubSpotState) -> dict[str, Any]:
    stamp = state.now()
    meeting = HubSpotMeeting("1", {"hs_meeting_title": "Malformed",
                                   "hs_meeting_start_time": "not-a-date"}, stamp, stamp)
    return meeting.resource(["hs_meeting_title", "hs_meeting_start_time"])


# Search ---------------------------------------------------------------------------------------


def _comparable(name: str, value: str) -> Any:
    if name in DATE_PROPERTIES or name in ("createdate", "lastmodifieddate"):
        try:
            return to_millis(parse_time(value))
        except ValueError:
            return value
    if name == "hs_object_id" and value.isdigit():
        return int(value)
    return value


def _matches(props: dict[str, str], flt: dict[str, Any]) -> bool:
    name, op = flt["propertyName"], flt["operator"]
    have = props.get(name)
    if op == "HAS_PROPERTY":
        return have is not None
    if op == "NOT_HAS_PROPERTY":
        return have is None
    if op in ("IN", "NOT_IN"):
        wanted = {str(v).lower() for v in flt.get("values") or []}
        inside = have is not None and have.lower() in wanted
        return inside if op == "IN" else not inside
    if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        token = str(flt.get("value", "")).strip("*").lower()
        inside = have is not None and token in have.lower()
        return inside if op == "CONTAINS_TOKEN" else not inside
    if have is None:
        return op == "NEQ"
    left = _comparable(name, have)
    right = _comparable(name, str(flt.get("value", "")))
    try:
        if op == "EQ":
            return left == right if not isinstance(left, str) else left.lower() == str(
                right).lower()
        if op == "NEQ":
            return left != right
        if op == "GT":
            return left > right
        if op == "GTE":
            return left >= right
        if op == "LT":
            return left < right
        if op == "LTE":
            return left <= right
        if op == "BETWEEN":
            high = _comparable(name, str(flt.get("highValue", "")))
            return right <= left <= high
    except TypeError:
        return False
    return False


def _search_problems(state: HubSpotState, body: dict[str, Any]) -> list[dict[str, Any]]:
    problems = []
    if state.search_requires_all_fields:
        for key in ("after", "filterGroups", "limit", "properties", "sorts"):
            if key not in body:
                problems.append({"message": f"{key} is required.", "in": key,
                                 "code": "REQUIRED"})
    groups = body.get("filterGroups", [])
    if not isinstance(groups, list) or len(groups) > 6:
        problems.append({"message": "filterGroups must be a list of at most 6 groups.",
                         "in": "filterGroups"})
        return problems
    for group in groups:
        filters = group.get("filters") if isinstance(group, dict) else None
        if not isinstance(filters, list):
            problems.append({"message": "Each filter group needs a filters list.",
                             "in": "filterGroups"})
            continue
        for flt in filters:
            if (not isinstance(flt, dict) or not isinstance(flt.get("propertyName"), str)
                    or flt.get("operator") not in (
                        "BETWEEN", "CONTAINS_TOKEN", "EQ", "GT", "GTE", "HAS_PROPERTY", "IN",
                        "LT", "LTE", "NEQ", "NOT_CONTAINS_TOKEN", "NOT_HAS_PROPERTY",
                        "NOT_IN")):
                problems.append({"message": f"Invalid filter {flt!r}.", "in": "filters"})
    if not isinstance(body.get("properties", []), list):
        problems.append({"message": "properties must be a list.", "in": "properties"})
    if not isinstance(body.get("sorts", []), list):
        problems.append({"message": "sorts must be a list.", "in": "sorts"})
    return problems


def _sort_keys(sorts: list[Any]) -> list[tuple[str, bool]]:
    keys = []
    for item in sorts:
        if isinstance(item, str) and item:
            keys.append((item.lstrip("-"), item.startswith("-")))
        elif isinstance(item, dict) and isinstance(item.get("propertyName"), str):
            keys.append((item["propertyName"],
                         str(item.get("direction", "ASCENDING")).upper() == "DESCENDING"))
        else:
            raise _validation(f"Invalid sort {item!r}.", [{"message": "Invalid sort.",
                                                           "in": "sorts"}])
    return keys


def _search(state: HubSpotState, body: dict[str, Any]) -> dict[str, Any]:
    problems = _search_problems(state, body)
    if problems:
        raise _validation("Invalid search request: " + "; ".join(p["message"] for p in problems),
                          problems)
    limit = _int_param(body.get("limit"), "limit", DEFAULT_LIMIT, 1, MAX_SEARCH_LIMIT)
    raw_after = body.get("after")
    offset = _int_param(raw_after if raw_after not in (None, "") else None, "after", 0, 0,
                        10_000)
    groups = body.get("filterGroups") or []
    found = [m for m in state.meetings(archived=False)
             if not groups or any(all(_matches(m.all_properties(), f) for f in g["filters"])
                                  for g in groups)]
    query = str(body.get("query") or "").lower()
    if query:
        found = [m for m in found if any(query in v.lower() for v in m.properties.values())]
    for name, descending in reversed(_sort_keys(body.get("sorts") or [])):
        present = [m for m in found if name in m.all_properties()]
        absent = [m for m in found if name not in m.all_properties()]
        present.sort(key=lambda m, n=name: _comparable(n, m.all_properties()[n]),
                     reverse=descending)
        found = present + absent
    page = found[offset:offset + limit]
    wanted = [str(p) for p in body.get("properties") or []]
    data: dict[str, Any] = {"total": len(found), "results": [
        {k: v for k, v in m.resource(wanted).items() if k != "associations"} for m in page]}
    if offset + limit < len(found):
        data["paging"] = {"next": {"after": str(offset + limit)}}
    return data


# Scheduler ------------------------------------------------------------------------------------

BOOKING_REQUIRED = {"duration": int, "email": str, "firstName": str, "formFields": list,
                    "lastName": str, "legalConsentResponses": list,
                    "likelyAvailableUserIds": list, "slug": str, "startTime": str}


def _booking_problems(body: dict[str, Any]) -> list[dict[str, Any]]:
    problems = []
    for key, kind in BOOKING_REQUIRED.items():
        if key not in body or body[key] is None:
            problems.append({"message": f"{key} is required.", "in": key, "code": "REQUIRED"})
        elif not isinstance(body[key], kind) or (kind is int and isinstance(body[key], bool)):
            problems.append({"message": f"{key} must be of type {kind.__name__}.", "in": key,
                             "code": "INVALID_TYPE"})
    for key in ("locale", "timezone"):
        if key in body and not isinstance(body[key], str):
            problems.append({"message": f"{key} must be a string.", "in": key})
    for item in body.get("formFields") if isinstance(body.get("formFields"), list) else []:
        if not (isinstance(item, dict) and isinstance(item.get("name"), str)
                and isinstance(item.get("value"), str)):
            problems.append({"message": "Each form field needs a string name and value.",
                             "in": "formFields"})
    for item in (body.get("legalConsentResponses")
                 if isinstance(body.get("legalConsentResponses"), list) else []):
        if not (isinstance(item, dict) and isinstance(item.get("communicationTypeId"), str)
                and isinstance(item.get("consented"), bool)):
            problems.append({"message": "Each legal consent response needs communicationTypeId "
                             "and consented.", "in": "legalConsentResponses"})
    email = body.get("email")
    if isinstance(email, str) and ("@" not in email or email.startswith("@")
                                   or "." not in email.rsplit("@", 1)[-1]):
        problems.append({"message": f"{email!r} is not a valid email address.", "in": "email",
                         "code": "INVALID_EMAIL"})
    if isinstance(body.get("timezone"), str):
        try:
            zone(body["timezone"])
        except SandboxError:
            problems.append({"message": "Unknown timezone.", "in": "timezone"})
    return problems


def _booking_info(state: HubSpotState, link: MeetingLink, tz: str, month_offset: int = 0
                  ) -> dict[str, Any]:
    availability = _availability(state, link, tz, month_offset)
    weekly = {WEEKDAYS[d]: {"start": ranges[0][0], "end": ranges[0][1]}
              for d, ranges in sorted(link.weekly_hours.items()) if ranges}
    custom: dict[str, Any] = {
        "availability": weekly,
        "durations": list(link.durations_ms),
        "formFields": [
            {"name": n, "label": label, "type": "string", "fieldType": "text", "isCustom": False,
             "isRequired": True, "options": []}
            for n, label in (("firstName", "First name"), ("lastName", "Last name"),
                             ("email", "Email"))],
        "legalConsentEnabled": False,
        "meetingBufferTime": link.buffer_ms,
        "ownerPrioritized": False,
        "startTimeIncrementMinutes": link.start_increment,
        "weeksToAdvertise": link.weeks_to_advertise,
        "location": link.location,
        "locale": "en-us",
        "language": "en",
        "guestSettings": {"canAddGuests": False, "maxGuestCount": 0},
    }
    return {"linkId": link.id, "linkType": link.link_type, "isOffline": False,
            "customParams": custom, **availability}


def _availability(state: HubSpotState, link: MeetingLink, tz: str, month_offset: int
                  ) -> dict[str, Any]:
    local_now = state.now().astimezone(zone(tz))
    months = local_now.year * 12 + local_now.month - 1 + month_offset
    first = datetime.combine(date(months // 12, months % 12 + 1, 1), time(), zone(tz))
    months += 1
    after = datetime.combine(date(months // 12, months % 12 + 1, 1), time(), zone(tz))
    horizon = state.now() + timedelta(weeks=link.weeks_to_advertise)
    by_duration, more = {}, False
    for duration in link.durations_ms:
        slots = state.slots(link, duration, first.astimezone(UTC), after.astimezone(UTC))
        by_duration[str(duration)] = {"meetingDurationMillis": duration, "availabilities": [
            {"startMillisUtc": to_millis(s), "endMillisUtc": to_millis(e)} for s, e in slots]}
        more = more or bool(state.slots(link, duration, after.astimezone(UTC), horizon))
    busy = state.busy_times(link)
    users = {u.user_id: u for u in state.users_of(link)}
    return {
        "allUsersBusyTimes": [
            {"meetingsUser": users[u].public(), "isOffline": False,
             "busyTimes": [{"start": to_millis(s), "end": to_millis(e)}
                           for s, e in sorted(busy[u]) if e > state.now()]}
            for u in link.user_ids],
        "linkAvailability": {"hasMore": more, "linkAvailabilityByDuration": by_duration},
    }


def create_app(state: HubSpotState) -> FastAPI:
    from bookingsync.sandbox.hubspot_control import control_router

    app = FastAPI(title="HubSpot sandbox", openapi_url=None, docs_url=None, redoc_url=None)
    install_request_log(app, state.requests, state.now)
    install_answer_faults(app, state.faults)
    app.include_router(control_router(state))

    @app.exception_handler(_Refused)
    async def refused(_request: Request, exc: _Refused) -> Response:
        return exc.response

    @app.exception_handler(HubSpotApiError)
    async def api_error(_request: Request, exc: HubSpotApiError) -> Response:
        return _api_error(exc)

    @app.exception_handler(404)
    async def not_found(request: Request, _exc: Exception) -> Response:
        if request.url.path.startswith("/_sandbox"):
            return JSONResponse({"error": "Not found."}, 404)
        return _error(404, "OBJECT_NOT_FOUND", f"No route for {request.url.path}.")

    @app.exception_handler(405)
    async def not_allowed(request: Request, _exc: Exception) -> Response:
        return _error(405, "VALIDATION_ERROR", f"{request.method} is not allowed here.")

    def not_found_error(kind: str, object_id: str) -> JSONResponse:
        return _error(404, "OBJECT_NOT_FOUND", "resource not found",
                      context={"id": [object_id]}, errors=[
                          {"message": f"No {kind} with id {object_id} exists.", "in": "id"}])

    # -- CRM --------------------------------------------------------------------------------

    @app.get(MEETINGS_PATH)
    async def list_meetings(request: Request) -> Response:
        fault = await _before(state, request, SCOPE_CRM_READ, listing=True)
        params = request.query_params
        limit = _int_param(params.get("limit"), "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        archived = _bool_param(params.get("archived"), "archived")
        after = params.get("after")
        if after is not None and not after.isdigit():
            raise _validation(f"Invalid paging cursor {after!r}.",
                              [{"message": "Invalid after.", "in": "after"}])
        properties, associations = _multi(request, "properties"), _multi(request, "associations")
        every = state.meetings(archived=archived)
        position = next((i for i, m in enumerate(every) if after is None or int(m.id) >= int(
            after)), len(every))
        page = every[position:position + limit]
        following = every[position + limit:position + limit + 1]
        results = [m.resource(properties, associations) for m in page]
        for mutation in state.faults.take_after_page(request.method, request.url.path,
                                                     position):
            assert mutation.action is not None
            mutation.action()
        if fault is not None and fault.kind == "malformed":
            results.append(_malformed(state))
        body: dict[str, Any] = {"results": results}
        if following:
            cursor = following[0].id
            query = [(k, v) for k, v in params.multi_items() if k != "after"]
            query.append(("after", cursor))
            link = f"{PUBLIC_BASE_URL}{MEETINGS_PATH}?{urlencode(query)}"
            body["paging"] = {"next": {"after": cursor, "link": link}}
        return JSONResponse(body)

    @app.post(MEETINGS_PATH, status_code=201)
    async def create_meeting(request: Request) -> Response:
        await _before(state, request, SCOPE_CRM_WRITE)
        body = await _json_object(request)
        props = body.get("properties")
        if not isinstance(props, dict):
            raise _validation("properties is required.", [{"message": "properties is required.",
                                                           "in": "properties"}])
        values = {k: v for k, v in state.normalise(props).items() if v != ""}
        if "hs_timestamp" not in values and "hs_meeting_start_time" in values:
            values["hs_timestamp"] = values["hs_meeting_start_time"]  # the 2024 changelog
        if "hs_timestamp" not in values:
            raise _validation("hs_timestamp is required (or hs_meeting_start_time).",
                              [{"message": "hs_timestamp is required.", "in": "hs_timestamp",
                                "code": "REQUIRED"}])
        meeting = state.insert_meeting(values, source=SOURCE_API)
        return JSONResponse(meeting.resource(meeting.properties), 201)

    @app.post(f"{MEETINGS_PATH}/search")
    async def search(request: Request) -> Response:
        await _before(state, request, SCOPE_CRM_READ)
        return JSONResponse(_search(state, await _json_object(request)))

    @app.get(MEETINGS_PATH + "/{meeting_id}")
    async def read_meeting(meeting_id: str, request: Request) -> Response:
        await _before(state, request, SCOPE_CRM_READ)
        archived = _bool_param(request.query_params.get("archived"), "archived")
        id_property = request.query_params.get("idProperty")
        try:
            if id_property and id_property != "hs_object_id":
                matches = [m for m in state.meetings(archived=archived)
                           if m.properties.get(id_property) == meeting_id]
                if not matches:
                    raise UnknownMeetingError(meeting_id)
                meeting = matches[0]
            else:
                meeting = state.get(meeting_id)
        except UnknownMeetingError:
            return not_found_error("meeting", meeting_id)
        if meeting.archived != archived:
            return not_found_error("meeting", meeting_id)
        return JSONResponse(meeting.resource(_multi(request, "properties"),
                                             _multi(request, "associations")))

    @app.patch(MEETINGS_PATH + "/{meeting_id}")
    async def update_meeting(meeting_id: str, request: Request) -> Response:
        await _before(state, request, SCOPE_CRM_WRITE)
        body = await _json_object(request)
        props = body.get("properties")
        if not isinstance(props, dict):
            raise _validation("properties is required.", [{"message": "properties is required.",
                                                           "in": "properties"}])
        try:
            meeting = state.update_meeting(meeting_id, props, source=SOURCE_API)
        except UnknownMeetingError:
            return not_found_error("meeting", meeting_id)
        return JSONResponse(meeting.resource(meeting.properties))

    @app.delete(MEETINGS_PATH + "/{meeting_id}")
    async def archive_meeting(meeting_id: str, request: Request) -> Response:
        await _before(state, request, SCOPE_CRM_WRITE)
        try:
            state.archive(meeting_id, source=SOURCE_API)
        except UnknownMeetingError:
            return not_found_error("meeting", meeting_id)
        return Response(status_code=204)

    @app.get(CONTACTS_PATH + "/{contact_id}")
    async def read_contact(contact_id: str, request: Request) -> Response:
        await _before(state, request, SCOPE_CRM_READ)
        contact = state.contact(contact_id)
        if contact is None:
            return not_found_error("contact", contact_id)
        return JSONResponse(contact.resource())

    # -- scheduler --------------------------------------------------------------------------

    @app.get(LINKS_PATH)
    async def list_links(request: Request) -> Response:
        await _before(state, request, SCOPE_LINKS_READ)
        params = request.query_params
        limit = _int_param(params.get("limit"), "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = _int_param(params.get("after"), "after", 0, 0, 10**9)
        kind = params.get("type")
        if kind is not None and kind not in ("GROUP_CALENDAR", "PERSONAL_LINK",
                                             "ROUND_ROBIN_CALENDAR"):
            raise _validation(f"Invalid type {kind!r}.", [{"message": "Invalid type.",
                                                           "in": "type"}])
        found = [link for link in state.links()
                 if (kind is None or link.link_type == kind)
                 and (params.get("name") is None
                      or params["name"].lower() in link.name.lower())
                 and (params.get("organizerUserId") is None
                      or link.organizer_user_id == params["organizerUserId"])]
        body: dict[str, Any] = {"total": len(found), "results": [
            link.metadata() for link in found[offset:offset + limit]]}
        if offset + limit < len(found):
            body["paging"] = {"next": {"after": str(offset + limit)}}
        return JSONResponse(body)

    @app.get(BOOK_PATH + "/availability-page/{slug}")
    async def availability(slug: str, request: Request) -> Response:
        await _before(state, request, SCOPE_LINKS_READ)
        tz = _tz_param(request)
        month_offset = _int_param(request.query_params.get("monthOffset"), "monthOffset", 0,
                                  -24, 24)
        link = state.link(slug)
        if link is None:
            return not_found_error("meeting link", slug)
        return JSONResponse(_availability(state, link, tz, month_offset))

    @app.get(BOOK_PATH + "/{slug}")
    async def booking_info(slug: str, request: Request) -> Response:
        await _before(state, request, SCOPE_LINKS_READ)
        tz = _tz_param(request)
        link = state.link(slug)
        if link is None:
            return not_found_error("meeting link", slug)
        return JSONResponse(_booking_info(state, link, tz))

    @app.post(BOOK_PATH)
    async def book(request: Request) -> Response:
        await _before(state, request, SCOPE_BOOK, SCOPE_CRM_WRITE)
        body = await _json_object(request)
        problems = _booking_problems(body)
        start = None
        if not problems:
            try:
                start = parse_time(body["startTime"])
            except ValueError:
                problems.append({"message": "startTime must be an ISO 8601 date-time.",
                                 "in": "startTime", "code": "INVALID_DATE"})
        if problems or start is None:
            raise _validation("Invalid input: " + "; ".join(p["message"] for p in problems),
                              problems)
        duration = body["duration"]
        duration_ms = duration * 60_000 if state.duration_unit == "minutes" else duration
        _meeting, answer = state.book(
            body["slug"], start, duration_ms, body["email"], body["firstName"],
            body["lastName"], timezone=body.get("timezone"), locale=body.get("locale"),
            form_fields=body["formFields"], legal_consent=body["legalConsentResponses"])
        return JSONResponse(answer | {"duration": duration})

    # -- webhooks management ----------------------------------------------------------------

    def check_app(app_id: str) -> None:
        if app_id != str(state.app_id):
            raise _Refused(_error(404, "OBJECT_NOT_FOUND", f"No app with id {app_id}."))

    def subscription_or_404(subscription_id: str) -> Subscription:
        sub = state.subscription(int(subscription_id)) if subscription_id.isdigit() else None
        if sub is None:
            raise _Refused(_error(404, "OBJECT_NOT_FOUND",
                                  f"No subscription with id {subscription_id}."))
        return sub

    @app.get(WEBHOOKS_PATH + "/{app_id}/subscriptions")
    async def list_subscriptions(app_id: str, request: Request) -> Response:
        await _before(state, request, SCOPE_DEV_READ)
        check_app(app_id)
        return JSONResponse({"results": [s.public() for s in state.subscriptions()]})

    @app.post(WEBHOOKS_PATH + "/{app_id}/subscriptions", status_code=201)
    async def create_subscription(app_id: str, request: Request) -> Response:
        await _before(state, request, SCOPE_DEV_WRITE)
        check_app(app_id)
        body = await _json_object(request)
        if not isinstance(body.get("eventType"), str) or not isinstance(body.get("active"),
                                                                         bool):
            raise _validation("eventType and active are required.")
        if body.get("objectTypeId", MEETINGS_OBJECT_TYPE_ID) != MEETINGS_OBJECT_TYPE_ID:
            raise _validation("The sandbox holds meetings (objectTypeId 0-47) only.")
        try:
            sub = state.subscribe(body["eventType"], body.get("propertyName"),
                                  active=body["active"])
        except SandboxError as exc:
            raise _validation(str(exc)) from None
        return JSONResponse(sub.public(), 201, headers={
            "Location": f"{PUBLIC_BASE_URL}{WEBHOOKS_PATH}/{app_id}/subscriptions/{sub.id}"})

    @app.get(WEBHOOKS_PATH + "/{app_id}/subscriptions/{subscription_id}")
    async def read_subscription(app_id: str, subscription_id: str, request: Request) -> Response:
        await _before(state, request, SCOPE_DEV_READ)
        check_app(app_id)
        return JSONResponse(subscription_or_404(subscription_id).public())

    @app.patch(WEBHOOKS_PATH + "/{app_id}/subscriptions/{subscription_id}")
    async def patch_subscription(app_id: str, subscription_id: str, request: Request
                                 ) -> Response:
        await _before(state, request, SCOPE_DEV_WRITE)
        check_app(app_id)
        sub = subscription_or_404(subscription_id)
        body = await _json_object(request)
        if "active" in body:
            if not isinstance(body["active"], bool):
                raise _validation("active must be a boolean.")
            state.set_subscription_active(sub.id, body["active"])
        return JSONResponse(sub.public())

    @app.delete(WEBHOOKS_PATH + "/{app_id}/subscriptions/{subscription_id}")
    async def delete_subscription(app_id: str, subscription_id: str, request: Request
                                  ) -> Response:
        await _before(state, request, SCOPE_DEV_WRITE)
        check_app(app_id)
        state.unsubscribe(subscription_or_404(subscription_id).id)
        return Response(status_code=204)

    def settings_body() -> dict[str, Any]:
        created = state.settings_created_at or state.now()
        return {"targetUrl": state.webhook_target_url or "", "createdAt": format_time(created),
                "throttling": {"maxConcurrentRequests": state.max_concurrent_requests}}

    @app.get(WEBHOOKS_PATH + "/{app_id}/settings")
    async def get_settings(app_id: str, request: Request) -> Response:
        await _before(state, request, SCOPE_DEV_READ)
        check_app(app_id)
        if not state.webhook_target_url:
            return _error(404, "OBJECT_NOT_FOUND", "No webhook settings for this app.")
        return JSONResponse(settings_body())

    @app.put(WEBHOOKS_PATH + "/{app_id}/settings")
    async def put_settings(app_id: str, request: Request) -> Response:
        await _before(state, request, SCOPE_DEV_WRITE)
        check_app(app_id)
        body = await _json_object(request)
        throttling = body.get("throttling")
        if (not isinstance(body.get("targetUrl"), str)
                or not body["targetUrl"].startswith(("http://", "https://"))
                or not isinstance(throttling, dict)
                or not isinstance(throttling.get("maxConcurrentRequests"), int)):
            raise _validation("targetUrl (an http(s) URL) and throttling.maxConcurrentRequests "
                              "are required.")
        state.webhook_target_url = body["targetUrl"]
        state.max_concurrent_requests = throttling["maxConcurrentRequests"]
        state.settings_created_at = state.settings_created_at or state.now()
        return JSONResponse(settings_body() | {"updatedAt": format_time(state.now())})

    @app.delete(WEBHOOKS_PATH + "/{app_id}/settings")
    async def clear_settings(app_id: str, request: Request) -> Response:
        await _before(state, request, SCOPE_DEV_WRITE)
        check_app(app_id)
        state.webhook_target_url = None
        return Response(status_code=204)

    return app
