"""meetergo v4 simulator: bookings, appointments, provisional bookings and webhooks, in memory.

Written only from meetergo's developer documentation (https://developer.meetergo.com/) and the
API reference page of ``POST /v4/booking``
(https://developer.meetergo.com/api-reference/bookings/create-booking). Booking and availability live in
`meetergo_booking`, the control API in `meetergo_control`, deliveries in `meetergo_webhooks`.

Provider surface (``create_app``), base ``/v4`` except the webhook management routes:

* ``GET /v4/booking-availability``, ``POST /v4/booking``, ``GET
  /v4/provisional-booking/paginated`` (`meetergo_booking`).
* ``GET /v4/appointment/paginated?page=&pageSize=`` → ``{"appointments": [...], "total"}``;
  ``GET /v4/appointment/today``, ``GET /v4/appointment/current``, ``GET /v4/appointment/{id}``.
* Cancel: ``DELETE /v4/appointment/{id}`` (the docs; 204) and ``POST
  /v4/appointment/{id}/cancel`` (what meetergo's MCP server calls; 201 with the appointment).
  Reschedule: ``POST /v4/booking`` with ``rescheduledFromId`` (the docs' pattern) and ``POST
  /v4/appointment/{id}/reschedule`` (the MCP server's; 201 with the appointment).
* ``POST|GET /webhooks``, ``PATCH|DELETE /webhooks/{id}`` at the host root, as the "Managing
  webhooks" page writes them; at most `MAX_WEBHOOKS` (6) → 406 "Limit reached".
* Auth: ``Authorization: Bearer rgo-…`` (personal token, acts as its owner, never reads
  ``x-meetergo-api-user-id``) or ``Bearer ak_live:<uuid>:<secret>`` (platform key; every
  endpoint then needs ``x-meetergo-api-user-id``, else 400 "Missing required header
  'x-meetergo-api-user-id' for API key authentication"). 401s: "Missing authorization header",
  "Invalid API key", "API key has expired".
* Errors use the documented envelope ``{"statusCode", "message", "error", "errors"?}``;
  validation failures are 400 ``"Validation failed"`` with ``errors: [{"field", "message"}]``.

Ambiguities, and how they are resolved (every "guess" is not in the stored docs):

* Rate limit: a token bucket per credential, `RATE_LIMIT_BURST` (200) deep, refilled at
  `RATE_LIMIT_PER_MINUTE` (100) a minute, **off by default** (``rate_limit_enabled``). The 429
  body is the documented one; no ``Retry-After`` is documented, so none is sent unless
  ``retry_after_header`` is on or an injected fault names one. Unhandled 500s answer NestJS's
  ``{"statusCode": 500, "message": "Internal server error"}`` (guess).
* Platform key with an ``x-meetergo-api-user-id`` naming no user of the company → 403
  ``"User does not belong to this company"`` (guess). The header is required on every endpoint
  ("most endpoints" in the docs; the sandbox cannot tell which are the exceptions).
* Visibility (guess): an ``admin`` user (the default user is one) sees every appointment of the
  company; a ``member`` sees the appointments it hosts. Others answer 404.
* Appointment list order (guess): by start, then id, ascending. A reschedule therefore moves a
  record across pages, and a page-number client can miss one unless it re-reads: adversarial
  on purpose. ``page`` counts from 0 (like the n8n node), ``pageSize`` defaults to 10 and may be
  1..100; other query parameters are ignored. ``total`` counts every listed appointment.
* Cancelled appointments stay listed with ``cancel`` set (the documented field only makes sense
  that way); ``hide_cancelled`` drops them instead, to test the other reading.
* Appointment fields: ``id``, ``secret``, ``ics``, ``meetingInfo``, ``hostingInfo{mainHost,
  meetingLink, googleEventId, calendarSyncProviders}``, ``cancel{actionSource, actionAt,
  actionBy, reason}``, ``crmOptions`` and ``total`` are documented. Guessed: ``ics`` holds the
  iCalendar text; ``meetingInfo`` = ``{start, end, duration, title, description, channel,
  location, meetingLink, timezone, attendees[]}``; ``hostingInfo`` also carries ``hostIds`` and
  ``coHosts``; the top level also ``meetingTypeId``, ``companyId``, ``rescheduledAt``,
  ``rescheduledFromId``, ``createdAt``, ``updatedAt``. ``crmOptions`` is ``{}``.
* Times: appointment and webhook ``start``/``end`` carry the meeting type's zone offset (the
  documented example shows ``+01:00``); ``createdAt``/``updatedAt``/``actionAt`` are UTC with
  ``Z``; availability slots are UTC ``Z`` ("All API times are in UTC by default").
* Cancelling an already cancelled appointment changes nothing and sends no webhook (204/201
  again), so the docs' "book the new one, then cancel the old one" pattern never fails.
* ``cancel.actionSource`` is ``"api"`` for the API, ``"host"``/``"attendee"`` from the control
  API; ``actionBy`` the acting user's id or the attendee's email (guesses).
* Reschedule webhooks: ``booking_rescheduled`` carries the new appointment plus
  ``originalStart``/``originalEnd`` (names guessed from "includes both the original start
  time") and ``rescheduledFromId`` (the old id, equal to ``id`` for an in-place move). A
  reschedule through ``rescheduledFromId`` cancels the old appointment (``cancel.reason``
  "Rescheduled", ``actionSource`` "reschedule") without a ``booking_cancelled``, and the
  successor sends ``booking_rescheduled`` only (no ``booking_created``); with
  ``reschedule_cancels_old`` off the old one stays until the client cancels it.
  ``/reschedule`` moves the appointment in place (same id).
* ``booking_cancelled`` = the ``booking_created`` fields with ``isCancelled: true`` plus
  ``cancel`` ("plus cancellation details").
* ``/v4/appointment/today`` (start on today's UTC date) and ``/current`` (under way now) answer
  bare arrays of appointments, cancelled ones left out (guesses; the docs only name them).
* The appointment ``secret`` ("cancel or reschedule without authentication") is returned and
  sent in webhooks, but no unauthenticated route takes it: the docs do not say which one does.
* Webhook subscriptions come from the control API or ``POST /webhooks``; the endpoint URL is
  kept verbatim, query and all, so a receiver can carry its own secret token in it (the only
  way to authenticate deliveries, which are unsigned). See `meetergo_webhooks`.
* Python API: `MeetergoState.reschedule` moves in place unless ``new_id=True``; the control
  route defaults to ``new_id: true`` (the docs' successor pattern, as meetergo's UI would).
* A ``malformed`` fault adds one broken appointment to a listing page (``variant``
  ``bad_start`` (default): ``meetingInfo.start`` is ``"not-a-date"``; ``missing_meeting_info``:
  no ``meetingInfo``); it counts in ``total``. A ``mutate`` fault's ``offset`` is the page number.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from bookingsync.sandbox.answer_faults import install_answer_faults
from bookingsync.sandbox.clock import aware, utc_now
from bookingsync.sandbox.errors import SandboxError, UnknownMeetingError
from bookingsync.sandbox.faults import Fault, FaultQueue
from bookingsync.sandbox.meetergo_webhooks import (
    BOOKING_CANCELLED,
    BOOKING_CREATED,
    BOOKING_RESCHEDULED,
    EVENT_TYPES,
    SHAPE_FLAT,
    DeliveryAttempt,
    WebhookSender,
    build_payload,
    new_attempt,
)
from bookingsync.sandbox.request_log import RequestLog, install_request_log

API_PREFIX = "/v4"
LIST_PATH = "/v4/appointment/paginated"
PROVISIONAL_LIST_PATH = "/v4/provisional-booking/paginated"
USER_ID_HEADER = "x-meetergo-api-user-id"

DEFAULT_COMPANY_ID = "c0a8e1f2-5b3d-4c6e-9f70-1a2b3c4d5e6f"
DEFAULT_USER_ID = "6f1c8e2a-3b4d-4c5e-8f9a-0b1c2d3e4f50"
SECOND_USER_ID = "7a2d9f3b-4c5e-4d6f-9a0b-1c2d3e4f5061"
DEFAULT_TOKEN = "rgo-sandbox-5f0c2b7e9a1d4c3b8e6f0a2d"  # personal token of DEFAULT_USER_ID
DEFAULT_PLATFORM_KEY_ID = "3c9e7b1a-2d4f-4a6b-8c0e-1f2a3b4c5d6e"
DEFAULT_PLATFORM_KEY = f"ak_live:{DEFAULT_PLATFORM_KEY_ID}:sbx_9d8c7b6a5f4e3d2c1b0a"
DEFAULT_PLATFORM_USER_ID = DEFAULT_USER_ID  # the user id tests send with the platform key

MEETING_TYPE_ID = "mt-4a1f0c3e-discovery-call"
DOUBLE_OPT_IN_MEETING_TYPE_ID = "mt-5b2e1d4f-doi-intro"
HOST_CONFIRMATION_MEETING_TYPE_ID = "mt-6c3f2e50-host-confirm"
ROUND_ROBIN_MEETING_TYPE_ID = "mt-7d403f61-team-demo"
ROUND_ROBIN_QUEUE_ID = "queue-8e514072-team"

DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100
MAX_WEBHOOKS = 6
RATE_LIMIT_PER_MINUTE = 100
RATE_LIMIT_BURST = 200
RATE_LIMIT_RETRY_AFTER_SECONDS = 60

BOOKING_TYPE_DOUBLE_OPT_IN = "doubleOptIn"
BOOKING_TYPE_HOST_CONFIRMATION = "requireHostConfirmation"
# The API reference's enum spelling (default) and the core-concepts guide's spelling.
BOOKING_TYPE_STYLES = {
    "reference": {
        BOOKING_TYPE_DOUBLE_OPT_IN: "doubleOptIn",
        BOOKING_TYPE_HOST_CONFIRMATION: "requireHostConfirmation",
    },
    "guide": {
        BOOKING_TYPE_DOUBLE_OPT_IN: "DoubleOptIn",
        BOOKING_TYPE_HOST_CONFIRMATION: "RequireHostConfirmation",
    },
}
PROVISIONAL_STATUSES = ("pending", "confirmed", "expired", "declined_by_host")
MALFORMED_VARIANTS = ("bad_start", "missing_meeting_info")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def parse_time(text: str) -> datetime:
    """ISO 8601; a value without an offset is taken as UTC (control API and tests)."""
    return aware(datetime.fromisoformat(text.replace("Z", "+00:00")))


def format_utc(value: datetime | None) -> str | None:
    if value is None:
        return None
    value = value.astimezone(UTC)
    if value.microsecond:
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def format_local(value: datetime | None, timezone: str) -> str | None:
    if value is None:
        return None
    return value.astimezone(ZoneInfo(timezone)).isoformat(timespec="seconds")


class MeetergoRefusal(SandboxError):
    """A request meetergo refuses; the app answers it in the documented envelope."""

    def __init__(self, status: int, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors


def validation_failed(field_name: str, message: str) -> MeetergoRefusal:
    return MeetergoRefusal(400, "Validation failed", [{"field": field_name, "message": message}])


SLOT_TAKEN = "Slot no longer available"


# -- records ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MeetergoUser:
    id: str
    email: str
    given_name: str
    family_name: str
    slug: str
    timezone: str = "Europe/Berlin"
    role: str = "admin"  # "admin" sees the whole company, "member" its own appointments

    def host(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "givenName": self.given_name,
            "familyName": self.family_name,
            "fullName": f"{self.given_name} {self.family_name}",
            "slug": self.slug,
            "picture": f"https://sandbox.meetergo.invalid/avatars/{self.slug}.jpg",
        }


@dataclass(frozen=True)
class MeetergoMeetingType:
    id: str
    slug: str
    name: str
    duration: int = 30  # minutes
    host_ids: tuple[str, ...] = (DEFAULT_USER_ID,)
    allowed_durations: tuple[int, ...] = ()
    queue_id: str | None = None  # round robin: queueId is required, hostIds optional
    double_opt_in: bool = False
    requires_host_confirmation: bool = False
    channel: str = "zoom"
    timezone: str = "Europe/Berlin"
    day_start_hour: int = 9
    day_end_hour: int = 17
    min_notice_minutes: int = 60
    provisional_ttl_hours: int = 24
    metadata: dict[str, Any] = field(default_factory=dict)

    def durations(self) -> tuple[int, ...]:
        return (self.duration, *self.allowed_durations)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "slug": self.slug,
            "name": self.name,
            "duration": self.duration,
            "allowedDurations": list(self.allowed_durations),
            "hostIds": list(self.host_ids),
            "queueId": self.queue_id,
            "doubleOptIn": self.double_opt_in,
            "requireHostConfirmation": self.requires_host_confirmation,
            "channel": self.channel,
            "timezone": self.timezone,
            "metadata": dict(self.metadata),
        }


def default_users() -> list[MeetergoUser]:
    return [
        MeetergoUser(
            DEFAULT_USER_ID, "jordan.host@sandbox-meetergo.example", "Jordan", "Host", "jordan-host"
        ),
        MeetergoUser(
            SECOND_USER_ID, "mika.pool@sandbox-meetergo.example", "Mika", "Pool", "mika-pool", role="member"
        ),
    ]


def default_meeting_types() -> list[MeetergoMeetingType]:
    return [
        MeetergoMeetingType(
            MEETING_TYPE_ID,
            "discovery-call",
            "Discovery Call",
            30,
            allowed_durations=(60,),
            metadata={"source": "sandbox"},
        ),
        MeetergoMeetingType(
            DOUBLE_OPT_IN_MEETING_TYPE_ID,
            "intro-double-opt-in",
            "Intro (double opt-in)",
            30,
            double_opt_in=True,
        ),
        MeetergoMeetingType(
            HOST_CONFIRMATION_MEETING_TYPE_ID,
            "consultation",
            "Consultation (host confirms)",
            45,
            requires_host_confirmation=True,
            channel="google",
        ),
        MeetergoMeetingType(
            ROUND_ROBIN_MEETING_TYPE_ID,
            "team-demo",
            "Team Demo",
            30,
            host_ids=(DEFAULT_USER_ID, SECOND_USER_ID),
            queue_id=ROUND_ROBIN_QUEUE_ID,
            channel="teamsForBusiness2",
        ),
    ]


@dataclass(frozen=True)
class MeetergoAttendee:
    email: str
    firstname: str | None = None
    lastname: str | None = None
    fullname: str | None = None
    phone: str | None = None
    timezone: str | None = None
    language: str | None = "en"
    receive_reminders: bool = True
    notes: dict[str, Any] = field(default_factory=dict)
    bringalong_emails: tuple[str, ...] = ()
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def name(self) -> str:
        if self.fullname:
            return self.fullname
        return " ".join(p for p in (self.firstname, self.lastname) if p) or self.email

    def webhook(self) -> dict[str, Any]:
        first, last = self.firstname, self.lastname
        if first is None and self.fullname:
            first, _, rest = self.fullname.partition(" ")
            last = rest or None
        return {
            "id": self.id,
            "email": self.email,
            "firstname": first,
            "lastname": last,
            "fullname": self.name,
            "phone": self.phone,
            "timezone": self.timezone,
            "language": self.language,
        }

    def api(self) -> dict[str, Any]:
        return self.webhook() | {
            "receiveReminders": self.receive_reminders,
            "notes": dict(self.notes),
            "bringalongEmails": list(self.bringalong_emails),
        }


@dataclass(frozen=True)
class Cancellation:
    action_source: str
    action_at: datetime
    action_by: str | None
    reason: str | None

    def public(self) -> dict[str, Any]:
        return {
            "actionSource": self.action_source,
            "actionAt": format_utc(self.action_at),
            "actionBy": self.action_by,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class MeetergoAppointment:
    id: str
    secret: str
    meeting_type_id: str
    start: datetime
    end: datetime
    host_ids: tuple[str, ...]
    attendees: tuple[MeetergoAttendee, ...]
    channel: str
    location: str | None
    meeting_link: str | None
    title: str
    description: str | None
    created_at: datetime
    updated_at: datetime
    cancel: Cancellation | None = None
    rescheduled_at: datetime | None = None
    rescheduled_from_id: str | None = None
    original_start: datetime | None = None
    original_end: datetime | None = None
    provisional_booking_id: str | None = None
    google_event_id: str | None = None

    @property
    def is_cancelled(self) -> bool:
        return self.cancel is not None


@dataclass(frozen=True)
class ProvisionalBooking:
    id: str
    booking_type: str  # BOOKING_TYPE_DOUBLE_OPT_IN or BOOKING_TYPE_HOST_CONFIRMATION
    meeting_type_id: str
    start: datetime
    end: datetime
    host_ids: tuple[str, ...]
    attendee: MeetergoAttendee
    channel: str
    location: str | None
    title: str | None
    description: str | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    decided_status: str = "pending"  # pending | confirmed | declined_by_host | expired
    appointment_id: str | None = None

    def status_at(self, now: datetime) -> str:
        if self.decided_status == "pending" and now >= self.expires_at:
            return "expired"
        return self.decided_status


@dataclass
class MeetergoWebhook:
    id: str
    endpoint: str
    description: str | None
    event_types: list[str]
    company_id: str
    created_at: datetime

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "endpoint": self.endpoint,
            "description": self.description,
            "eventTypes": list(self.event_types),
            "companyId": self.company_id,
            "createdAt": format_utc(self.created_at),
        }


@dataclass(frozen=True)
class BusyBlock:
    """A busy time in a host's external calendar, as meetergo's calendar sync sees it."""

    host_id: str
    start: datetime
    end: datetime
    added_at: datetime


@dataclass(frozen=True)
class Credential:
    user_id: str | None  # personal tokens name their owner; platform keys choose per request
    expires_at: datetime | None = None

    @property
    def platform(self) -> bool:
        return self.user_id is None


@dataclass(frozen=True)
class BookingResult:
    appointment: MeetergoAppointment | None = None
    provisional: ProvisionalBooking | None = None


@dataclass(frozen=True)
class Slot:
    start: datetime
    end: datetime
    host_ids: tuple[str, ...]


def _meeting_link(channel: str) -> str | None:
    token = secrets.token_hex(5)
    links = {
        "zoom": f"https://zoom.us/j/{secrets.randbelow(9 * 10**9) + 10**9}",
        "google": f"https://meet.google.com/{token[:3]}-{token[3:7]}-{token[7:]}",
        "teamsForBusiness2": f"https://teams.microsoft.com/l/meetup-join/19%3ameeting_{token}",
        "connect": f"https://connect.meetergo.com/{token}",
        "webex": f"https://meetergo.webex.com/meet/{token}",
        "whereby": f"https://whereby.com/{token}",
        "jitsi": f"https://meet.jit.si/meetergo-{token}",
        "kmeet": f"https://kmeet.infomaniak.com/{token}",
    }
    return links.get(channel)


# -- state --------------------------------------------------------------------------------------


class MeetergoState:
    """Everything the simulator holds; every method is safe to call from any thread."""

    def __init__(
        self,
        *,
        now: Callable[[], datetime] | None = None,
        company_id: str = DEFAULT_COMPANY_ID,
        users: Iterable[MeetergoUser] | None = None,
        meeting_types: Iterable[MeetergoMeetingType] | None = None,
        personal_tokens: Mapping[str, str] | None = None,
        platform_keys: Iterable[str] = (DEFAULT_PLATFORM_KEY,),
    ) -> None:
        self.now = now or utc_now
        self.company_id = company_id
        # Settings (all switchable over the control API).
        self.payload_shape = SHAPE_FLAT
        self.duplicate_deliveries = False
        self.booking_type_style = "reference"
        self.reschedule_cancels_old = True
        self.hide_cancelled = False
        self.calendar_sync_lag_seconds = 0.0
        self.reject_unknown_fields = True
        self.rate_limit_enabled = False
        self.rate_limit_per_minute = RATE_LIMIT_PER_MINUTE
        self.rate_limit_burst = RATE_LIMIT_BURST
        self.retry_after_header = False
        self.faults = FaultQueue()
        self.requests = RequestLog()
        self._lock = threading.RLock()
        self._users = {u.id: u for u in (users if users is not None else default_users())}
        self._meeting_types = {
            m.id: m for m in (meeting_types if meeting_types is not None else default_meeting_types())
        }
        self._credentials: dict[str, Credential] = {}
        for token, user_id in (personal_tokens or {DEFAULT_TOKEN: DEFAULT_USER_ID}).items():
            self.add_personal_token(token, user_id)
        for key in platform_keys:
            self.add_platform_key(key)
        self._appointments: dict[str, MeetergoAppointment] = {}
        self._provisional: dict[str, ProvisionalBooking] = {}
        self._busy: list[BusyBlock] = []
        self._webhooks: dict[str, MeetergoWebhook] = {}
        self._buckets: dict[str, tuple[float, datetime]] = {}
        self._round_robin_counts: dict[str, int] = {}
        self._sender = WebhookSender()

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    # -- credentials, users, meeting types ---------------------------------------------------

    def add_personal_token(self, token: str, user_id: str = DEFAULT_USER_ID) -> None:
        if not token.startswith("rgo-"):
            raise SandboxError("Personal access tokens start with 'rgo-'.")
        with self._lock:
            self._credentials[token] = Credential(user_id=user_id)

    def add_platform_key(self, key: str | None = None, expires_at: datetime | None = None) -> str:
        """Register a platform key (``ak_live:<uuid>:<secret>``); a new one if `key` is None."""
        key = key or f"ak_live:{uuid.uuid4()}:{secrets.token_hex(16)}"
        if not is_platform_key(key):
            raise SandboxError("Platform API keys look like ak_live:<uuid>:<secret>.")
        with self._lock:
            self._credentials[key] = Credential(
                user_id=None, expires_at=aware(expires_at) if expires_at else None
            )
        return key

    def credential(self, token: str) -> Credential | None:
        with self._lock:
            return self._credentials.get(token)

    def add_user(self, user: MeetergoUser) -> None:
        with self._lock:
            self._users[user.id] = user

    def user(self, user_id: str) -> MeetergoUser | None:
        with self._lock:
            return self._users.get(user_id)

    def users(self) -> list[MeetergoUser]:
        with self._lock:
            return list(self._users.values())

    def add_meeting_type(self, meeting_type: MeetergoMeetingType) -> None:
        with self._lock:
            self._meeting_types[meeting_type.id] = meeting_type

    def meeting_type(self, meeting_type_id: str) -> MeetergoMeetingType | None:
        with self._lock:
            return self._meeting_types.get(meeting_type_id)

    def meeting_types(self) -> list[MeetergoMeetingType]:
        with self._lock:
            return list(self._meeting_types.values())

    def allow_request(self, token: str) -> bool:
        """Take one token from the credential's bucket (burst deep, refilled per minute)."""
        with self._lock:
            if not self.rate_limit_enabled:
                return True
            now = self.now()
            level, at = self._buckets.get(token, (float(self.rate_limit_burst), now))
            refill = max((now - at).total_seconds(), 0.0) * self.rate_limit_per_minute / 60.0
            level = min(float(self.rate_limit_burst), level + refill)
            if level < 1.0:
                self._buckets[token] = (level, now)
                return False
            self._buckets[token] = (level - 1.0, now)
            return True

    # -- availability ------------------------------------------------------------------------

    def block(self, host_id: str, start: datetime, end: datetime) -> BusyBlock:
        """A busy event in the host's external calendar (subject to ``calendar_sync_lag``)."""
        with self._lock:
            busy = BusyBlock(host_id, aware(start), aware(end), self.now())
            self._busy.append(busy)
            return busy

    def host_busy(
        self,
        host_id: str,
        start: datetime,
        end: datetime,
        *,
        ignore_appointment: str | None = None,
        lagging: bool = False,
    ) -> bool:
        return (
            self.busy_reason(host_id, start, end, ignore_appointment=ignore_appointment, lagging=lagging)
            is not None
        )

    def busy_reason(
        self,
        host_id: str,
        start: datetime,
        end: datetime,
        *,
        ignore_appointment: str | None = None,
        lagging: bool = False,
    ) -> str | None:
        """Why `host_id` is taken in [start, end), or None: an appointment, a pending provisional
        booking or an external busy block (`lagging` hides blocks younger than the sync lag)."""
        with self._lock:
            now = self.now()
            for appt in self._appointments.values():
                if (
                    appt.id != ignore_appointment
                    and not appt.is_cancelled
                    and host_id in appt.host_ids
                    and appt.start < end
                    and start < appt.end
                ):
                    return "Existing appointment"
            for prov in self._provisional.values():
                if (
                    prov.status_at(now) == "pending"
                    and host_id in prov.host_ids
                    and prov.start < end
                    and start < prov.end
                ):
                    return "Pending provisional booking"
            lag = timedelta(seconds=self.calendar_sync_lag_seconds)
            if any(
                b.host_id == host_id
                and b.start < end
                and start < b.end
                and not (lagging and now - b.added_at < lag)
                for b in self._busy
            ):
                return "Calendar event"
            return None

    def is_bookable_time(self, mt: MeetergoMeetingType, start: datetime, duration: int) -> bool:
        """On the slot grid: a weekday, inside the working hours, after the minimum notice."""
        local = start.astimezone(ZoneInfo(mt.timezone))
        if local.weekday() >= 5 or local.second or local.microsecond:
            return False
        day_start = local.replace(hour=mt.day_start_hour, minute=0)
        day_end = local.replace(hour=mt.day_end_hour, minute=0)
        offset = (local - day_start).total_seconds() / 60
        return (
            local >= day_start
            and local + timedelta(minutes=duration) <= day_end
            and offset % mt.duration == 0
            and start >= self.now() + timedelta(minutes=mt.min_notice_minutes)
        )

    def available_slots(
        self,
        meeting_type_id: str,
        first_day: date,
        last_day: date,
        *,
        duration: int | None = None,
        ignore_appointment: str | None = None,
    ) -> list[Slot]:
        return self.scan_slots(
            meeting_type_id, first_day, last_day, duration=duration, ignore_appointment=ignore_appointment
        )[0]

    def scan_slots(
        self,
        meeting_type_id: str,
        first_day: date,
        last_day: date,
        *,
        duration: int | None = None,
        ignore_appointment: str | None = None,
    ) -> tuple[list[Slot], list[tuple[datetime, datetime, str, str]]]:
        """Free slots (a host or more is free) and, per host, the grid slots it is busy in with
        the reason, over the days `first_day`..`last_day` in the meeting type's zone."""
        with self._lock:
            mt = self._require_meeting_type(meeting_type_id)
            length = duration or mt.duration
            zone = ZoneInfo(mt.timezone)
            slots: list[Slot] = []
            blocked: list[tuple[datetime, datetime, str, str]] = []
            day = first_day
            while day <= last_day:
                local = datetime(day.year, day.month, day.day, mt.day_start_hour, tzinfo=zone)
                closing = datetime(day.year, day.month, day.day, mt.day_end_hour, tzinfo=zone)
                while local + timedelta(minutes=length) <= closing:
                    start = local.astimezone(UTC)
                    end = start + timedelta(minutes=length)
                    local += timedelta(minutes=mt.duration)
                    if not self.is_bookable_time(mt, start, length):
                        continue
                    free = []
                    for host in mt.host_ids:
                        reason = self.busy_reason(
                            host, start, end, lagging=True, ignore_appointment=ignore_appointment
                        )
                        if reason is None:
                            free.append(host)
                        else:
                            blocked.append((start, end, host, reason))
                    if free:
                        slots.append(Slot(start, end, tuple(free)))
                day += timedelta(days=1)
            return slots, blocked

    # -- bookings ----------------------------------------------------------------------------

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

    # -- wire shapes -------------------------------------------------------------------------

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

    # -- webhooks ----------------------------------------------------------------------------

    def add_webhook(
        self, endpoint: str, event_types: Iterable[str], description: str | None = None
    ) -> MeetergoWebhook:
        types = list(event_types)
        unknown = [t for t in types if t not in EVENT_TYPES]
        if unknown:
            raise validation_failed(
                "eventTypes", f"Unknown event type(s): {', '.join(unknown)}; use {', '.join(EVENT_TYPES)}"
            )
        if not types:
            raise validation_failed("eventTypes", "eventTypes should not be empty")
        if not endpoint.startswith(("http://", "https://")):
            raise validation_failed("endpoint", "endpoint must be a URL address")
        with self._lock:
            if len(self._webhooks) >= MAX_WEBHOOKS:
                raise MeetergoRefusal(406, "Limit reached")
            hook = MeetergoWebhook(
                id=str(uuid.uuid4()),
                endpoint=endpoint,
                description=description,
                event_types=types,
                company_id=self.company_id,
                created_at=self.now(),
            )
            self._webhooks[hook.id] = hook
            return hook

    def update_webhook(
        self,
        webhook_id: str,
        *,
        endpoint: str | None = None,
        event_types: Iterable[str] | None = None,
        description: str | None = None,
    ) -> MeetergoWebhook:
        with self._lock:
            hook = self._webhooks.get(webhook_id)
            if hook is None:
                raise MeetergoRefusal(404, "Webhook not found")
            if event_types is not None:
                types = list(event_types)
                unknown = [t for t in types if t not in EVENT_TYPES]
                if unknown or not types:
                    raise validation_failed(
                        "eventTypes", f"eventTypes must be a non-empty list of {', '.join(EVENT_TYPES)}"
                    )
                hook.event_types = types
            if endpoint is not None:
                if not endpoint.startswith(("http://", "https://")):
                    raise validation_failed("endpoint", "endpoint must be a URL address")
                hook.endpoint = endpoint
            if description is not None:
                hook.description = description
            return hook

    def remove_webhook(self, webhook_id: str) -> bool:
        with self._lock:
            return self._webhooks.pop(webhook_id, None) is not None

    def webhooks(self) -> list[MeetergoWebhook]:
        with self._lock:
            return list(self._webhooks.values())

    def emit(self, webhook_type: str, data: Mapping[str, Any]) -> list[DeliveryAttempt]:
        """Send `data` as a `webhook_type` event to every subscribed endpoint (any event type,
        e.g. ``new_employee`` or ``form_submission``)."""
        if webhook_type not in EVENT_TYPES:
            raise SandboxError(f"Unknown webhook type {webhook_type!r}; use one of {', '.join(EVENT_TYPES)}.")
        with self._lock:
            payload = build_payload(webhook_type, data, self.payload_shape)
            attempts = []
            for hook in self._webhooks.values():
                if webhook_type not in hook.event_types:
                    continue
                for _ in range(2 if self.duplicate_deliveries else 1):
                    attempt = new_attempt(hook.id, hook.endpoint, webhook_type, payload)
                    self._sender.send(attempt)
                    attempts.append(attempt)
            return attempts

    def redeliver(self, delivery_id: str) -> DeliveryAttempt:
        """Send a recorded delivery's body again, as meetergo may (a duplicate)."""
        for old in self._sender.attempts():
            if old.delivery_id == delivery_id:
                attempt = new_attempt(
                    old.webhook_id,
                    old.target_url,
                    old.webhook_type,
                    old.payload(),
                    redelivery_of=old.delivery_id,
                )
                self._sender.send(attempt)
                return attempt
        raise SandboxError(f"No recorded delivery {delivery_id!r}; list /_sandbox/deliveries.")

    def deliveries(self) -> list[DeliveryAttempt]:
        return self._sender.attempts()

    def flush_deliveries(self, timeout: float = 10.0) -> bool:
        return self._sender.flush(timeout)

    def close(self) -> None:
        self._sender.close()

    # -- faults ------------------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        self.faults.add(fault)

    def after_page(self, page: int, action: Callable[[], None]) -> None:
        """Run `action` once the next listing of `page` is computed, before it is sent."""
        self.faults.add(Fault(kind="mutate", offset=page, action=action, path=LIST_PATH))

    # -- internals ---------------------------------------------------------------------------

    def _require_meeting_type(self, meeting_type_id: str) -> MeetergoMeetingType:
        mt = self._meeting_types.get(meeting_type_id)
        if mt is None:
            raise SandboxError(
                f"The sandbox has no meeting type {meeting_type_id!r}; known: "
                f"{', '.join(self._meeting_types)}."
            )
        return mt

    def _choose_hosts(
        self, mt: MeetergoMeetingType, host_ids: tuple[str, ...], queue_id: str | None
    ) -> tuple[str, ...]:
        if mt.queue_id is not None:
            if queue_id is None:
                raise validation_failed("queueId", "queueId is required for this meeting type")
            if queue_id != mt.queue_id:
                raise validation_failed("queueId", "queueId does not belong to this meeting type")
        elif queue_id is not None:
            raise validation_failed("queueId", "queueId must be undefined for this meeting type")
        elif not host_ids:
            raise validation_failed("hostIds", "hostIds is required for this meeting type")
        strangers = [h for h in host_ids if h not in mt.host_ids]
        if strangers:
            raise validation_failed(
                "hostIds", f"Host(s) {', '.join(strangers)} are not assigned to this meeting type"
            )
        return host_ids or mt.host_ids

    def _free_hosts(
        self,
        mt: MeetergoMeetingType,
        hosts: tuple[str, ...],
        start: datetime,
        length: int,
        queue: bool,
        ignore: str | None,
    ) -> tuple[str, ...]:
        end = start + timedelta(minutes=length)
        if not self.is_bookable_time(mt, start, length):
            raise MeetergoRefusal(400, SLOT_TAKEN)
        free = [h for h in hosts if not self.host_busy(h, start, end, ignore_appointment=ignore)]
        if not queue:
            if len(free) != len(hosts):
                raise MeetergoRefusal(400, SLOT_TAKEN)
            return hosts
        if not free:
            raise MeetergoRefusal(400, SLOT_TAKEN)
        # Round robin: the free host with the fewest bookings so far, then queue order.
        chosen = min(free, key=lambda h: (self._round_robin_counts.get(h, 0), free.index(h)))
        self._round_robin_counts[chosen] = self._round_robin_counts.get(chosen, 0) + 1
        return (chosen,)

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

    def _emit(self, webhook_type: str, appt: MeetergoAppointment) -> None:
        self.emit(webhook_type, self.webhook_data(appt, webhook_type))

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


def is_platform_key(token: str) -> bool:
    parts = token.split(":")
    if len(parts) != 3 or parts[0] != "ak_live" or not parts[2]:
        return False
    try:
        uuid.UUID(parts[1])
    except ValueError:
        return False
    return True


# -- HTTP ---------------------------------------------------------------------------------------

ERROR_NAMES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    406: "Not Acceptable",
    429: "Too Many Requests",
    500: "Internal Server Error",
}


def error(
    status: int,
    message: str,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "statusCode": status,
        "message": message,
        "error": ERROR_NAMES.get(status, "Error"),
    }
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status, headers=headers)


def refusal_response(exc: MeetergoRefusal) -> JSONResponse:
    return error(exc.status, exc.message, exc.errors)


class Refused(Exception):
    """Raised by a handler to answer with `response` at once."""

    def __init__(self, response: Response) -> None:
        self.response = response


def rate_limited(retry_after: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return error(429, "Too Many Requests", headers=headers)


def authorize(state: MeetergoState, request: Request) -> str:
    """The acting user's id, or `Refused` with the documented 401/400/403/429."""
    header = request.headers.get("authorization")
    if not header:
        raise Refused(error(401, "Missing authorization header"))
    scheme, _, token = header.partition(" ")
    token = token.strip()
    credential = state.credential(token) if scheme.lower() == "bearer" else None
    if credential is None:
        raise Refused(error(401, "Invalid API key"))
    if credential.expires_at is not None and credential.expires_at <= state.now():
        raise Refused(error(401, "API key has expired"))
    if credential.platform:
        user_id = request.headers.get(USER_ID_HEADER, "").strip()
        if not user_id:
            raise Refused(
                error(400, "Missing required header 'x-meetergo-api-user-id' for API key authentication")
            )
        if state.user(user_id) is None:
            raise Refused(error(403, "User does not belong to this company"))
    else:
        user_id = credential.user_id or DEFAULT_USER_ID
    if not state.allow_request(token):
        raise Refused(rate_limited(RATE_LIMIT_RETRY_AFTER_SECONDS if state.retry_after_header else None))
    return user_id


async def before(
    state: MeetergoState, request: Request, *, listing: bool = False
) -> tuple[str, Fault | None]:
    """Authorize, then apply an injected fault; returns the acting user and a fault the
    listing must still honour."""
    user_id = authorize(state, request)
    fault = state.faults.take_before(request.method, request.url.path, listing=listing)
    if fault is None:
        return user_id, None
    if fault.kind == "delay":
        await asyncio.sleep(fault.seconds)
        return user_id, None
    if fault.kind == "429":
        raise Refused(rate_limited(fault.retry_after))
    if fault.kind == "500":
        raise Refused(JSONResponse({"statusCode": 500, "message": "Internal server error"}, 500))
    return user_id, fault


async def json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise Refused(
            error(400, "Validation failed", [{"field": "body", "message": "The body must be a JSON object"}])
        )
    return body


def int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int | None = None) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Refused(
            error(400, "Validation failed", [{"field": name, "message": f"{name} must be an integer number"}])
        ) from None
    if value < low:
        raise Refused(
            error(
                400, "Validation failed", [{"field": name, "message": f"{name} must not be less than {low}"}]
            )
        )
    if high is not None and value > high:
        raise Refused(
            error(
                400,
                "Validation failed",
                [{"field": name, "message": f"{name} must not be greater than {high}"}],
            )
        )
    return value


def _malformed(state: MeetergoState, variant: str | None) -> dict[str, Any]:
    stamp = state.now()
    record = state.appointment_resource(
        MeetergoAppointment(
            id=str(uuid.uuid4()),
            secret="malformed",
            meeting_type_id=MEETING_TYPE_ID,
            start=stamp,
            end=stamp,
            host_ids=(DEFAULT_USER_ID,),
            attendees=(MeetergoAttendee(email="broken@example.com"),),
            channel="zoom",
            location=None,
            meeting_link=None,
            title="Malformed record",
            description=None,
            created_at=stamp,
            updated_at=stamp,
        )
    )
    if (variant or "bad_start") == "missing_meeting_info":
        del record["meetingInfo"]
    else:
        record["meetingInfo"]["start"] = "not-a-date"
    return record


def _visible(state: MeetergoState, user_id: str, appointment_id: str) -> MeetergoAppointment:
    try:
        appt = state.get(appointment_id)
    except UnknownMeetingError:
        raise Refused(error(404, "Appointment not found")) from None
    if not state.visible_to(user_id)(appt):
        raise Refused(error(404, "Appointment not found"))
    return appt


async def _optional_object(request: Request) -> dict[str, Any]:
    if not (await request.body()).strip():
        return {}
    return await json_object(request)


def create_app(state: MeetergoState) -> FastAPI:
    # Imported here: both modules build on this one's state, errors and auth.
    from bookingsync.sandbox.meetergo_booking import booking_router, parse_offset_time
    from bookingsync.sandbox.meetergo_control import control_router

    app = FastAPI(title="meetergo v4 sandbox", openapi_url=None, docs_url=None, redoc_url=None)
    install_request_log(app, state.requests, state.now)
    install_answer_faults(app, state.faults)
    app.include_router(control_router(state))
    app.include_router(booking_router(state))

    @app.exception_handler(Refused)
    async def refused(_request: Request, exc: Refused) -> Response:
        return exc.response

    @app.exception_handler(MeetergoRefusal)
    async def refusal(_request: Request, exc: MeetergoRefusal) -> Response:
        return refusal_response(exc)

    @app.get(LIST_PATH)
    async def list_appointments(request: Request) -> Response:
        user_id, fault = await before(state, request, listing=True)
        page = int_param(request.query_params, "page", 0, 0)
        page_size = int_param(request.query_params, "pageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        data, total = state.list_page(user_id, page, page_size)
        for mutation in state.faults.take_after_page(request.method, request.url.path, page):
            assert mutation.action is not None  # Fault refuses a mutate without one
            mutation.action()
        if fault is not None and fault.kind == "malformed":
            data.append(_malformed(state, fault.variant))
            total += 1
        return JSONResponse({"appointments": data, "total": total})

    @app.get("/v4/appointment/today")
    async def today(request: Request) -> Response:
        user_id, _ = await before(state, request)
        now = state.now()
        visible = state.visible_to(user_id)
        found = [
            state.appointment_resource(a)
            for a in state.appointments()
            if visible(a) and not a.is_cancelled and a.start.date() == now.date()
        ]
        return JSONResponse(found)

    @app.get("/v4/appointment/current")
    async def current(request: Request) -> Response:
        user_id, _ = await before(state, request)
        now = state.now()
        visible = state.visible_to(user_id)
        found = [
            state.appointment_resource(a)
            for a in state.appointments()
            if visible(a) and not a.is_cancelled and a.start <= now < a.end
        ]
        return JSONResponse(found)

    @app.get("/v4/appointment/{appointment_id}")
    async def get_appointment(appointment_id: str, request: Request) -> Response:
        user_id, _ = await before(state, request)
        return JSONResponse(state.appointment_resource(_visible(state, user_id, appointment_id)))

    @app.delete("/v4/appointment/{appointment_id}")
    async def delete_appointment(appointment_id: str, request: Request) -> Response:
        user_id, _ = await before(state, request)
        body = await _optional_object(request)
        reason = body.get("reason", request.query_params.get("reason"))
        with state.lock:
            _visible(state, user_id, appointment_id)
            state.cancel(
                appointment_id,
                reason if isinstance(reason, str) else None,
                action_source="api",
                action_by=user_id,
            )
        return Response(status_code=204)

    @app.post("/v4/appointment/{appointment_id}/cancel")
    async def cancel_appointment(appointment_id: str, request: Request) -> Response:
        user_id, _ = await before(state, request)
        body = await _optional_object(request)
        reason = body.get("reason")
        with state.lock:
            _visible(state, user_id, appointment_id)
            appt = state.cancel(
                appointment_id,
                reason if isinstance(reason, str) else None,
                action_source="api",
                action_by=user_id,
            )
        return JSONResponse(state.appointment_resource(appt), 201)

    @app.post("/v4/appointment/{appointment_id}/reschedule")
    async def reschedule_appointment(appointment_id: str, request: Request) -> Response:
        user_id, _ = await before(state, request)
        body = await json_object(request)
        start = parse_offset_time(body.get("start"), "start")
        duration = body.get("duration")
        if duration is not None and (
            not isinstance(duration, int) or isinstance(duration, bool) or duration <= 0
        ):
            raise Refused(
                error(
                    400,
                    "Validation failed",
                    [{"field": "duration", "message": "duration must be a positive number"}],
                )
            )
        with state.lock:
            _visible(state, user_id, appointment_id)
            appt = state.reschedule(
                appointment_id, start, duration=duration, check_availability=True, acting_user_id=user_id
            )
        return JSONResponse(state.appointment_resource(appt), 201)

    @app.post("/webhooks")
    async def create_webhook(request: Request) -> Response:
        await before(state, request)
        body = await json_object(request)
        endpoint, types = body.get("endpoint"), body.get("eventTypes")
        if not isinstance(endpoint, str):
            raise validation_failed("endpoint", "endpoint must be a URL address")
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise validation_failed("eventTypes", "eventTypes must be an array of strings")
        description = body.get("description")
        hook = state.add_webhook(endpoint, types, description if isinstance(description, str) else None)
        return JSONResponse(hook.public(), 201)

    @app.get("/webhooks")
    async def list_webhooks(request: Request) -> Response:
        await before(state, request)
        return JSONResponse([h.public() for h in state.webhooks()])

    @app.patch("/webhooks/{webhook_id}")
    async def update_webhook(webhook_id: str, request: Request) -> Response:
        await before(state, request)
        body = await json_object(request)
        types = body.get("eventTypes")
        if types is not None and not isinstance(types, list):
            raise validation_failed("eventTypes", "eventTypes must be an array of strings")
        hook = state.update_webhook(
            webhook_id, endpoint=body.get("endpoint"), event_types=types, description=body.get("description")
        )
        return JSONResponse(hook.public())

    @app.delete("/webhooks/{webhook_id}")
    async def delete_webhook(webhook_id: str, request: Request) -> Response:
        await before(state, request)
        if not state.remove_webhook(webhook_id):
            return error(404, "Webhook not found")
        return Response(status_code=204)

    return app
