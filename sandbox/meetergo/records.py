"""Meetergo's wire records and constants: users, meeting types, appointments, provisional bookings,
webhooks and credentials as the simulator holds them, the ids, paths and limits, the two time
formats, and the refusal the state raises with a documented status."""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from bookingsync.sandbox.errors import SandboxError

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


def is_platform_key(token: str) -> bool:
    parts = token.split(":")
    if len(parts) != 3 or parts[0] != "ak_live" or not parts[2]:
        return False
    try:
        uuid.UUID(parts[1])
    except ValueError:
        return False
    return True
