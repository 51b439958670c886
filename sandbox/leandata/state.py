"""The LeanData simulator's state: meetings, hosts, booking tokens and settings in memory, with
the wire constants, ids and the epoch-millisecond times they are written in."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from bookingsync.sandbox.clock import utc_now
from bookingsync.sandbox.errors import UnknownMeetingError
from bookingsync.sandbox.faults import Fault, FaultQueue
from bookingsync.sandbox.request_log import RequestLog

LIST_PATH = "/v1/meetings"
DEFAULT_API_KEY = "ld_sandbox_api_key"
ID_LENGTH = 52
ID_ALPHABET = "0123456789abcdefghijklmnopqrstuv"
LIST_STATUSES = ("scheduled", "rescheduled", "canceled")
MALFORMED_VARIANTS = ("bad_start_time", "missing_calendar_event")
DEFAULT_HOSTS: tuple[dict[str, str], ...] = (
    {
        "id": "0058c00000SandAAA",
        "FirstName": "Riley",
        "LastName": "Host",
        "Email": "riley.host@sandbox-leandata.example",
        "TimeZoneSidKey": "America/Los_Angeles",
        "ConferenceLink": "https://zoom.us/j/1000000001",
    },
    {
        "id": "0058c00000SandBBB",
        "FirstName": "Sam",
        "LastName": "Pool",
        "Email": "sam.pool@sandbox-leandata.example",
        "TimeZoneSidKey": "Europe/Berlin",
        "ConferenceLink": "https://zoom.us/j/1000000002",
    },
)


def to_epoch_ms(value: datetime | int) -> int:
    if isinstance(value, int):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def parse_time_param(text: str) -> int:
    """Epoch milliseconds from all-digit text or an ISO 8601 timestamp."""
    if text.isdigit():
        return int(text)
    value = datetime.fromisoformat(text)
    return to_epoch_ms(value)


def new_meeting_id() -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


@dataclass(frozen=True)
class LeanDataMeeting:
    id: str
    title: str
    start_ms: int
    end_ms: int
    timezone: str
    prospect_email: str
    organizer_email: str
    guest_emails: tuple[str, ...]
    bookit_status: str
    host_user_id: str | None = None

    @property
    def calendar_status(self) -> str:
        return "canceled" if self.bookit_status == "canceled" else "confirmed"

    def attendees(self) -> list[dict[str, Any]]:
        organizer = {
            "email": self.organizer_email,
            "responseStatus": "accepted",
            "organizer": True,
            "self": True,
        }
        others = [
            {"email": e, "responseStatus": "needsAction"} for e in (self.prospect_email, *self.guest_emails)
        ]
        return [organizer, *others]

    def scheduled_time(self) -> dict[str, int]:
        return {"start_time": self.start_ms, "end_time": self.end_ms}

    def wire(self, *, flat: bool = False) -> dict[str, Any]:
        if flat:
            return {
                "id": self.id,
                "title": self.title,
                "status": self.calendar_status,
                "scheduledTime": self.scheduled_time(),
                "organizer_email": self.organizer_email,
                "attendees": self.attendees(),
            }
        return {
            "bookIt": {"status": self.bookit_status},
            "calendarEvent": {
                "id": self.id,
                "title": self.title,
                "status": self.calendar_status,
                "scheduledTime": self.scheduled_time(),
                "organizer": {"email": self.organizer_email},
                "attendees": self.attendees(),
            },
        }


class LeanDataState:
    """Everything the simulator holds; every method is safe to call from any thread."""

    def __init__(
        self,
        *,
        now: Callable[[], datetime] | None = None,
        api_keys: Iterable[str] = (DEFAULT_API_KEY,),
        flat_shape: bool = False,
        display_all_pool_availability: bool | None = False,
        hosts: Iterable[dict[str, str]] = DEFAULT_HOSTS,
    ) -> None:
        self.now = now or utc_now
        self.flat_shape = flat_shape
        self.display_all_pool_availability = display_all_pool_availability
        self.hosts = [dict(h) for h in hosts]
        self.faults = FaultQueue()
        self.requests = RequestLog()
        self._lock = threading.RLock()
        self._api_keys = set(api_keys)
        self._meetings: dict[str, LeanDataMeeting] = {}
        self.booking_tokens: dict[str, dict[str, Any]] = {}  # owned by the booking routes (`booking`)

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def now_ms(self) -> int:
        return to_epoch_ms(self.now())

    def add_api_key(self, api_key: str) -> None:
        with self._lock:
            self._api_keys.add(api_key)

    def accepts(self, api_key: str | None) -> bool:
        with self._lock:
            return api_key is not None and api_key in self._api_keys

    def book(
        self,
        title: str,
        start: datetime | int,
        end: datetime | int,
        prospect_email: str,
        organizer_email: str | None = None,
        *,
        timezone: str = "UTC",
        guest_emails: Iterable[str] = (),
        status: str = "scheduled",
        host_user_id: str | None = None,
    ) -> str:
        with self._lock:
            meeting = LeanDataMeeting(
                id=new_meeting_id(),
                title=title,
                start_ms=to_epoch_ms(start),
                end_ms=to_epoch_ms(end),
                timezone=timezone,
                prospect_email=prospect_email,
                organizer_email=organizer_email or self.hosts[0]["Email"],
                guest_emails=tuple(guest_emails),
                bookit_status=status,
                host_user_id=host_user_id,
            )
            self._meetings[meeting.id] = meeting
            return meeting.id

    def reschedule(
        self, meeting_id: str, start: datetime | int, end: datetime | int, timezone: str | None = None
    ) -> LeanDataMeeting:
        with self._lock:
            meeting = self.get(meeting_id)
            meeting = replace(
                meeting,
                start_ms=to_epoch_ms(start),
                end_ms=to_epoch_ms(end),
                timezone=timezone or meeting.timezone,
                bookit_status="rescheduled",
            )
            self._meetings[meeting_id] = meeting
            return meeting

    def cancel(self, meeting_id: str) -> None:
        with self._lock:
            self._meetings[meeting_id] = replace(self.get(meeting_id), bookit_status="canceled")

    def remove(self, meeting_id: str) -> None:
        """Hard delete: the meeting vanishes from every answer, as if deleted at the calendar."""
        with self._lock:
            self.get(meeting_id)
            del self._meetings[meeting_id]

    def get(self, meeting_id: str) -> LeanDataMeeting:
        with self._lock:
            try:
                return self._meetings[meeting_id]
            except KeyError:
                raise UnknownMeetingError(meeting_id) from None

    def meetings(self) -> list[LeanDataMeeting]:
        with self._lock:
            return sorted(self._meetings.values(), key=lambda m: (m.start_ms, m.id))

    def list_for(
        self,
        prospect_email: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        status: str | None = None,
    ) -> list[LeanDataMeeting]:
        lower = start_ms if start_ms is not None else self.now_ms()
        wanted = prospect_email.lower()
        return [
            m
            for m in self.meetings()
            if m.prospect_email.lower() == wanted
            and m.start_ms >= lower
            and (end_ms is None or m.start_ms <= end_ms)
            and (status is None or m.bookit_status == status)
        ]

    def wire(self, meeting: LeanDataMeeting) -> dict[str, Any]:
        return meeting.wire(flat=self.flat_shape)

    def add_fault(self, fault: Fault) -> None:
        self.faults.add(fault)

    def after_listing(self, action: Callable[[], None]) -> None:
        """Run `action` once the next listing is computed, before it is sent."""
        self.faults.add(Fault(kind="mutate", offset=0, action=action, path=LIST_PATH))
