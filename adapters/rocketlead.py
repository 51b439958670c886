"""RocketLead: a write-only target. Finds the exact slot, books it, and deletes bookings.

Follows RocketLead's developer documentation (https://docs.rocketlead.io/developers/connect-api/):
Connect API overview, Authentication & scopes, Bookings (the whole page, with the complete
booking response), Availability, Lookups, Race conditions & idempotency, Workflows, Automation
triggers. Ambiguities, and the reading taken:

* Nothing is read. The docs document no list or get endpoint for bookings and no webhooks to
  third parties (the automation triggers run flows inside RocketLead; ingress webhooks are
  inbound to it). Capabilities are CREATE and CANCEL: the adapter is a `Writer` only, with no
  `read` (so nothing is ever called vanished) and no `parse_webhook` (a delivery is refused by
  the web layer, which finds no `WebhookReceiver`).
* No RESCHEDULE. No update endpoint is documented, so moving a booking is a new booking plus a
  hard delete. The worker's reconcile does exactly that (RECREATE: create, then cancel the old
  one) as its own step; doing it here too would hide a half-done move inside one call, so it is
  no `Mover`. Known limit: on a resource with capacity 1, a move
  that overlaps the old booking's time finds its slot full and raises SlotUnavailable.
* Exact time. A mirrored booking must be at the meeting's exact start and end, so only an
  `available: true` slot whose startDateTime and endDateTime are the same instants as the
  meeting's (compared in UTC, whatever offset the slot is written in) is booked; the race page's
  "pick a fresh slot" means a fresh slot *at that time* (another resourceSlotId or resource),
  never another time. No such slot is SlotUnavailable with a sentence saying whether the slot
  was full or absent. Slots come back full or not ("filter to available: true client-side"),
  so `includeUnavailable` is not sent; anything but a literal `true` counts as not bookable.
* Availability window. Whether `start`/`end` bound slot starts or whole slots, and inclusively
  or not, is undocumented, and slots may be stepped from `start`. We send `start` = the meeting's
  start (so a grid stepped from it still has a slot there) and `end` = its end plus
  AVAILABILITY_END_PADDING, as ISO 8601 UTC with milliseconds and Z (JavaScript's form).
* The booking body is the modern one: calendarId, appointmentTypeId, resourceId (the
  configured one, else the chosen slot's), resourceSlotId (passed back unchanged, as the docs
  ask) and startDateTime/endDateTime copied from the chosen slot unchanged (the strings the
  server wrote, so its own comparison cannot trip on formatting). Legacy scheduleType* fields
  are never sent. Absent values are omitted, not sent as null.
* The lead link. The issue names it `tableEntryId`, but the documented request body calls the
  field `entryId`; `tableEntryId` appears only in the response. We send `entryId`, and only when
  the attendee's email is in `table_entry_ids` (no lead search endpoint is documented, and
  creating a lead is not idempotent, so we never create one).
* `name` is the meeting's title, else the attendee's name, else their email, followed by our
  reference as ` [bookingsync <reference>]`: the only free-text field of a booking, so a person
  looking at RocketLead can tell which write of ours made it. It cannot be searched (no list or
  get endpoint), so RocketLead has no FIND_BOOKING.
* Slot race. A 400 whose message contains "no longer available" (the documented "The selected
  time slot is no longer available") refetches availability and tries again: one booking plus at
  most `max_slot_retries` more, then SlotUnavailable. Any other 400 is ProviderRejected as is.
* Lost answers. The POST is never replayed after a timeout, a 5xx or a closed connection
  (ProviderHttp raises AnswerLost for non-idempotent methods): RocketLead has no idempotency key,
  and without a list endpoint a booking whose answer was lost cannot be found again, so the
  worker records the outcome as unknown and holds the mirror for a person. A 2xx answer that is
  not JSON, or has no booking id (`id`, else `_id` or `bookingId`, also inside a `data` wrapper),
  means the booking was probably made: AnswerLost as well.
* Cancel is DELETE (admin scope, hard, no undo). 404 is success: the booking is already gone. The
  docs say 404 also means "not in your organization", so a 404 is logged with that hint.
* Scopes. read (GET) < write (+POST) < admin (+DELETE); 403 is "scope insufficient", so a 403
  becomes ProviderAuthError naming the scope the call needed. 401 says the token is missing,
  malformed, expired or revoked. A token not starting with `rocketlead_` is refused at config
  time, since RocketLead rejects every such token with 401.
* Errors come as `{statusCode, message}`; `message` may also be a list of strings (the usual
  shape of validation errors behind such an envelope); they are joined with "; ".
* Timezone. "Calendars carry IANA tzdata — read this for any local-time math": the calendar is
  looked up (`GET /connect/calendar/{id}`, documented only as an object) before any slot is read,
  and its zone taken from `timezone`, `timeZone` or `tz` when that is a valid IANA name. The
  answer is cached for the adapter's life. The zone is required, not decoration: a lookup that
  fails for now (5xx, timeout) is ProviderUnavailable, so the write is retried later; a 404 is
  the calendar's absence (ProviderNotFound); a calendar without a usable zone is logged and its
  slots are read only where they carry an offset.
* Wall times. A slot or booking time written without an offset is a local time in the calendar
  zone, read by the zone's rules (adapters/wall_time.py): in a fold (clocks going back) it names
  two instants, in a gap none. Slots are matched by instant, never by string. Two slots listed
  with the same local times in a fold are the first and the second hour, in the order listed
  (the answer is ordered by time). We ask availability from three hours before to three hours
  after the meeting so both hours are listed; the documents do not say whether a server lists
  slots outside the `start`/`end` asked, so the window itself settles nothing (defensive reading).
  A slot still ambiguous after that is not booked (SlotUnavailable
  saying why), and a time in a gap is no slot at all. The booking's own times are read with the
  instants of the slot we chose, so the mirror records exactly the hour that was booked.
* Status. A booking is `scheduled`; one with a `deletedAt` (in the response schema although
  deletes are hard) is `cancelled`. `createdAt` is its `source_updated_at` (bookings are never
  updated). The attendee is read, best effort, from `tableEntryData` through the
  `tableSchemaFields` marked `specialType` email / name / firstName / lastName / phone; an
  unusable value there is left out, not guessed.
* Base URL. The docs write it as `https://api.rocketlead.io/connect/...`; a base_url ending in
  `/connect` is accepted and not doubled.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator

from bookingsync.adapters import skew
from bookingsync.adapters.base import (
    BookingRequest,
    BookingShape,
    Capability,
    RawRecord,
)
from bookingsync.adapters.fields import as_email, as_text, as_zone, unusable
from bookingsync.adapters.http import ProviderHttp, response_json
from bookingsync.adapters.settings import AdapterSettings, blank
from bookingsync.adapters.time_formats import iso_ms_z
from bookingsync.adapters.wall_time import readings
from bookingsync.models.errors import (
    AnswerLost,
    NormaliseError,
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    SlotUnavailable,
)
from bookingsync.models.meeting import Meeting, MeetingStatus, Person, SourceRecord, normalise_email

log = logging.getLogger(__name__)

PROVIDER = "rocketlead"
TOKEN_PREFIX = "rocketlead_"  # "Anything that doesn't start with rocketlead_ is rejected with 401"
AVAILABILITY_PATH = "/connect/availability/"
BOOKINGS_PATH = "/connect/calendar_bookings/"
CALENDAR_PATH = "/connect/calendar/"
# Room after the meeting's end in the availability query, whose bounds' semantics are undocumented.
AVAILABILITY_END_PADDING = timedelta(hours=3)  # as the lookback: both readings of a fold near the end
# Room before the meeting's start in the availability query. Whether a server lists slots before the
# `start` asked is undocumented (ours does not, others may), so the window cannot tell the two hours
# of a fold apart; asking from earlier makes the answer list both readings of a repeated local time,
# and their order settles which is which. Three hours covers every fold in the tz database.
AVAILABILITY_START_LOOKBACK = timedelta(hours=3)
SLOT_TAKEN = "no longer available"  # from "The selected time slot is no longer available"
ID_KEYS = ("id", "_id", "bookingId")
ZONE_KEYS = ("timezone", "timeZone", "tz")
# How our reference is written into a booking's name, and read back from it.
REFERENCE_FORMAT = " [bookingsync {}]"
REFERENCE_PATTERN = re.compile(r" ?\[bookingsync ([^\]\s]+)\]$")
# What each scope allows (Authentication & scopes), for 403 messages.
SCOPE_FOR_METHOD = {"GET": "read", "POST": "write", "DELETE": "admin"}


# -- pure: times, slots, bookings ---------------------------------------------------------------


def _parsed(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        return None


def instants(value: Any, zone: str | None) -> tuple[datetime, ...]:
    """Every UTC instant an ISO 8601 time names: one with an offset; a local time without one is
    read by `zone`'s rules (two readings in a fold, none in a gap, none without a zone)."""
    parsed = _parsed(value)
    if parsed is None:
        return ()
    if parsed.tzinfo is not None:
        return (parsed.astimezone(UTC),)
    return readings(parsed, ZoneInfo(zone)) if zone else ()


def parse_time(value: Any, zone: str | None = None, *, prefer: datetime | None = None) -> datetime | None:
    """One aware UTC instant for an ISO 8601 time; a time without offset is read in `zone`.

    None when the value is not a time, has no offset and no zone is known, names a local time
    the zone skips (a gap), or names a repeated local time (a fold) and `prefer` is not one of
    its readings: two readings are never settled by guessing.
    """
    found = instants(value, zone)
    if prefer is not None and prefer in found:
        return prefer
    return found[0] if len(found) == 1 else None


def calendar_zone(body: Any) -> str | None:
    """The IANA zone of a `GET /connect/calendar/{id}` answer, if it names a valid one."""
    if (
        isinstance(body, dict)
        and isinstance(body.get("data"), dict)
        and not any(k in body for k in ZONE_KEYS)
    ):
        body = body["data"]
    if not isinstance(body, dict):
        return None
    return next((zone for zone in (as_zone(body.get(k), PROVIDER) for k in ZONE_KEYS) if zone), None)


def availability_slots(body: Any) -> list[Any] | None:
    """The `data` array of an availability answer (a bare array is accepted too), else None."""
    if isinstance(body, dict):
        body = body.get("data")
    return body if isinstance(body, list) else None


@dataclass(frozen=True)
class SlotTimes:
    """One availability slot with the instants its times name (`start`/`end` None: unreadable)."""

    slot: dict[str, Any]
    start: datetime | None
    end: datetime | None
    ambiguous: bool = False  # a local time in a fold that nothing in the answer settles


def _settle(
    keys: list[tuple[Any, ...]],
    every: list[tuple[datetime, ...]],
    allowed: list[tuple[datetime, ...]],
    narrowed: list[tuple[datetime, ...]],
) -> list[datetime | None]:
    """One instant per listed time, or None where it stays open (see `slot_times`).

    `every`: each time's readings; `allowed`: those it may have; `narrowed`: those left by the
    availability window, used only where repetition settles nothing.
    """
    out: list[datetime | None] = [None] * len(keys)
    groups: dict[tuple[Any, ...], list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    for indices in groups.values():
        options = every[indices[0]]
        if (
            len(options) > 1
            and len(indices) == len(options)
            and all(options[k] in allowed[i] for k, i in enumerate(indices))
        ):
            for k, i in enumerate(indices):
                out[i] = options[k]
            continue
        guesses = {i: narrowed[i][0] for i in indices if len(narrowed[i]) == 1}
        for i, instant in guesses.items():
            # Two listings of one local time read as one instant: the window did not settle it.
            if len(options) == 1 or list(guesses.values()).count(instant) == 1:
                out[i] = instant
    return out


def slot_times(slots: list[Any], zone: str | None, earliest: datetime | None = None) -> list[SlotTimes]:
    """Read every slot's times by the calendar zone's rules, folds settled where the answer allows.

    A slot written with an offset names one instant. A local time in a fold names two; they are
    settled by repetition (an end is after its start; `earliest` is accepted but narrows nothing,
    see below): when the answer lists the same local time of one resource and appointment
    type exactly as many times as it has readings, the k-th listing is the k-th reading (the
    answer is ordered by time: the slot of the first 02:00 comes before that of the second).
    Anything still open stays ambiguous: such a slot is never booked, since booking the wrong one
    of two hours is exactly the failure this prevents.
    """
    listed = [slot for slot in slots if isinstance(slot, dict)]
    keys = [(slot.get("resourceId"), slot.get("appointmentTypeId")) for slot in listed]
    every = [instants(slot.get("startDateTime"), zone) for slot in listed]
    # `earliest` does not narrow a fold: a server may list slots from before the `start` asked (the
    # documents do not say), and then "the reading inside the window" is the wrong hour. Only the
    # repetition rule below settles a fold; what it cannot settle is refused as ambiguous.
    del earliest
    window = every
    starts = _settle(
        [(*key, slot.get("startDateTime")) for key, slot in zip(keys, listed, strict=True)],
        every,
        every,
        window,
    )
    every = [instants(slot.get("endDateTime"), zone) for slot in listed]
    after = [
        tuple(t for t in options if start is not None and t > start)
        for options, start in zip(every, starts, strict=True)
    ]
    ends = _settle(
        [(*key, slot.get("endDateTime")) for key, slot in zip(keys, listed, strict=True)], every, after, after
    )
    out = []
    for slot, start, end, options in zip(listed, starts, ends, every, strict=True):
        open_fold = (start is None and len(instants(slot.get("startDateTime"), zone)) > 1) or (
            end is None and len(options) > 1
        )
        out.append(
            SlotTimes(slot, start, end, ambiguous=open_fold)
            if start and end
            else SlotTimes(slot, None, None, ambiguous=open_fold)
        )
    return out


def find_slot(
    slots: list[Any],
    start: datetime,
    end: datetime,
    *,
    resource_id: str | None,
    appointment_type_id: str,
    zone: str | None,
    earliest: datetime | None = None,
) -> tuple[dict[str, Any] | None, bool]:
    """The first bookable slot whose instants are exactly start–end, and whether one was there
    but full. Matched by instant, never by the string: `2026-10-25T02:00:00` in Europe/Berlin is
    two slots an hour apart."""
    full = False
    for read in slot_times(slots, zone, earliest):
        slot = read.slot
        if (read.start, read.end) != (start, end):
            continue
        if resource_id is not None and slot.get("resourceId") not in (None, resource_id):
            continue
        if slot.get("appointmentTypeId") not in (None, appointment_type_id):
            continue
        if slot.get("available") is True:
            return slot, full
        full = True
    return None, full


def ambiguous_slots(
    slots: list[Any], start: datetime, zone: str | None, earliest: datetime | None = None
) -> bool:
    """Whether a slot that may be at `start` could not be told apart from its twin in a fold."""
    return any(
        read.ambiguous and start in instants(read.slot.get("startDateTime"), zone)
        for read in slot_times(slots, zone, earliest)
    )


def booking_name(meeting: Meeting, reference: str | None = None) -> str | None:
    name = meeting.title or meeting.attendee.name or meeting.attendee.email
    if reference is None:
        return name
    return (name or "Meeting") + REFERENCE_FORMAT.format(reference)


def name_reference(name: Any) -> tuple[str | None, str | None]:
    """A booking name split into the title and the reference bookingsync planted in it (if any)."""
    text = as_text(name)
    if text is None:
        return None, None
    found = REFERENCE_PATTERN.search(text)
    if found is None:
        return text, None
    return text[: found.start()].strip() or None, found.group(1)


def booking_body(
    slot: Mapping[str, Any],
    *,
    calendar_id: str,
    appointment_type_id: str,
    resource_id: str | None,
    entry_id: str | None,
    name: str | None,
) -> dict[str, Any]:
    """The modern `POST /connect/calendar_bookings/` body for `slot`, absent values omitted."""
    body = {
        "calendarId": calendar_id,
        "appointmentTypeId": appointment_type_id,
        "resourceId": resource_id or as_text(slot.get("resourceId")),
        "resourceSlotId": as_text(slot.get("resourceSlotId")),
        "entryId": entry_id,
        "name": name,
        "startDateTime": slot["startDateTime"],
        "endDateTime": slot["endDateTime"],
    }
    return {key: value for key, value in body.items() if value is not None}


def booking_object(body: Any) -> Any:
    """The booking in a create answer: the object itself, or inside a `data` wrapper."""
    if isinstance(body, dict) and booking_id(body) is None and isinstance(body.get("data"), dict):
        return body["data"]
    return body


def booking_id(payload: Any) -> str | None:
    if not isinstance(payload, dict):
        return None
    for key in ID_KEYS:
        value = payload.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return None


def _attendee(payload: Mapping[str, Any]) -> Person:
    """Best effort: the lead's email, name and phone through the schema's special types."""
    schema, data = payload.get("tableSchemaFields"), payload.get("tableEntryData")
    if not isinstance(schema, dict) or not isinstance(data, dict):
        return Person()
    # `Record<string, Record<string, unknown>>` reads two ways: {group: {field: value}} or
    # {field: {"value": value}}. Accept both; a field id is what the schema names.
    values: dict[str, str] = {}
    for key, group in data.items():
        if not isinstance(group, dict):
            continue
        wrapped = group.get("value")
        if key in schema and isinstance(wrapped, str) and wrapped.strip():
            values.setdefault(key, wrapped.strip())
            continue
        for field_id, value in group.items():
            if isinstance(value, str) and value.strip():
                values.setdefault(field_id, value.strip())
    found: dict[str, str] = {}
    for field_id, spec in schema.items():
        kind = spec.get("specialType") if isinstance(spec, dict) else None
        # The primary field of a type wins over another field of the same type.
        if (
            isinstance(kind, str)
            and field_id in values
            and (kind not in found or spec.get("primaryOfSpecialType") is True)
        ):
            found[kind] = values[field_id]
    name = (
        found.get("name") or " ".join(p for p in (found.get("firstName"), found.get("lastName")) if p) or None
    )
    return Person(email=as_email(found.get("email")), name=name, phone=found.get("phone"))


def normalise_booking(
    payload: Any, timezone: str | None = None, *, at: tuple[datetime, datetime] | None = None
) -> SourceRecord:
    """A RocketLead booking object as a canonical `SourceRecord`; `timezone` is the calendar's.

    `at` is the (start, end) the booking was made for: it settles a local time in a fold (the
    slot we chose), and nothing else. Without it such a time is refused, never guessed.
    """
    payload = booking_object(payload)
    if not isinstance(payload, dict):
        raise NormaliseError(f"a RocketLead booking must be a JSON object, not {type(payload).__name__}")
    external_id = booking_id(payload)
    if external_id is None:
        raise NormaliseError("the RocketLead booking has no id (neither id, _id nor bookingId)")
    zone = as_zone(timezone, PROVIDER)
    times = {}
    for index, key in enumerate(("startDateTime", "endDateTime")):
        times[key] = parse_time(payload.get(key), zone, prefer=at[index] if at else None)
        if times[key] is None:
            found = instants(payload.get(key), zone)
            why = (
                "a local time that occurs twice in " + str(zone) + " (clocks go back then), and nothing says "
                "which"
                if len(found) > 1
                else "a local time that does not exist in " + str(zone) + " (clocks go forward then)"
                if zone and _parsed(payload.get(key)) is not None
                else "not an ISO 8601 time with an offset (and no calendar timezone is known to read it in)"
            )
            raise NormaliseError(
                f"the RocketLead booking {external_id} has {key} {payload.get(key)!r}, which is {why}"
            )
    deleted = payload.get("deletedAt")
    title, reference = name_reference(payload.get("name"))
    try:
        meeting = Meeting(
            status=MeetingStatus.CANCELLED if deleted not in (None, "") else MeetingStatus.SCHEDULED,
            title=title,
            start=times["startDateTime"],
            end=times["endDateTime"],
            timezone=zone,
            attendee=_attendee(payload),
        )
        return SourceRecord(
            external_id=external_id,
            meeting=meeting,
            reference=reference,
            source_updated_at=parse_time(payload.get("createdAt"), zone),
        )
    except ValidationError as exc:
        raise unusable(f"the RocketLead booking {external_id}", exc) from exc


def error_message(response: httpx.Response) -> str:
    """`{"statusCode": 400, "message": "..."}`; `message` may be a list of strings."""
    body = response.json()
    if not isinstance(body, dict):
        return ""
    message = body.get("message")
    if isinstance(message, list):
        return "; ".join(str(m) for m in message if m not in (None, ""))
    return str(message or body.get("error") or "")


def is_slot_race(exc: ProviderRejected) -> bool:
    return exc.status == 400 and SLOT_TAKEN in exc.message.lower()


# -- the adapter: the HTTP edge -----------------------------------------------------------------


class RocketLeadSettings(AdapterSettings):
    """What a RocketLead connection takes (README: Connection settings by provider)."""

    label: ClassVar[str] = "RocketLead"

    base_url: str = Field(
        description="RocketLead's API address, e.g. `https://api.rocketlead.io` (a trailing `/connect` is dropped)"
    )
    token: SecretStr = Field(description="`rocketlead_…` API token with write scope (admin scope to cancel)")
    calendar_id: str = Field(description="the calendar bookings are made in (`GET /connect/calendar/`)")
    appointment_type_id: str = Field(
        description="the appointment type of a booking (`GET /connect/appointment_types/`)"
    )
    resource_id: str | None = Field(
        default=None,
        description="the resource a booking takes (`GET /connect/resources/`); unset: the slot's own",
    )
    table_entry_ids: dict[str, str] = Field(
        default_factory=dict, description="attendee email → RocketLead lead id, for bookings that name a lead"
    )
    max_slot_retries: int = Field(
        default=3, description="fresh slots tried when the chosen one is taken meanwhile (0: none)"
    )
    timeout: float = Field(default=15.0, gt=0, description="seconds one request may take")

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        token = value.get_secret_value()  # stripped and not blank (AdapterSettings)
        if not token.startswith(TOKEN_PREFIX):
            raise ValueError(
                f"the RocketLead token must start with {TOKEN_PREFIX!r} (RocketLead "
                "rejects any other); copy it from RocketLead Settings → API Tokens"
            )
        return SecretStr(token)

    @field_validator("calendar_id", "appointment_type_id")
    @classmethod
    def _id(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise ValueError(
                f"{info.field_name} is empty; set it to the id from GET /connect/calendar/ "
                "or /connect/appointment_types/"
            )
        return value.strip()

    @field_validator("resource_id")
    @classmethod
    def _resource(cls, value: str | None) -> str | None:
        if blank(value):
            raise ValueError(
                "resource_id is empty; remove it or set it to an id from GET /connect/resources/"
            )
        return value.strip() if value else None

    @field_validator("max_slot_retries", mode="before")
    @classmethod
    def _retries(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError("max_slot_retries must be a whole number, zero or more")
        return value

    @field_validator("table_entry_ids", mode="before")
    @classmethod
    def _entries(cls, value: Any) -> Any:
        entries: dict[str, str] = {}
        for email, entry_id in (value or {}).items():
            try:
                key = normalise_email(email)
            except ValueError as exc:
                raise ValueError(f"table_entry_ids has {email!r}, which is not an email address") from exc
            if key is None or not isinstance(entry_id, str) or not entry_id.strip():
                raise ValueError(f"table_entry_ids needs an email and a lead id in each entry, not {email!r}")
            entries[key] = entry_id.strip()
        return entries


class RocketLeadAdapter:
    provider: ClassVar[str] = PROVIDER
    settings_model: ClassVar[type[AdapterSettings]] = RocketLeadSettings
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.CREATE, Capability.CANCEL})
    # Times as JavaScript writes them (milliseconds); a booking fills a slot, which has a length.
    shape: ClassVar[BookingShape] = BookingShape(zero_length=False)

    def __init__(
        self,
        *,
        connection_id: str,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        **values: Any,
    ) -> None:
        settings = RocketLeadSettings.checked(connection_id, values)
        self.connection_id = connection_id
        self._calendar_id = settings.calendar_id
        self._appointment_type_id = settings.appointment_type_id
        self._resource_id = settings.resource_id
        self._entries = settings.table_entry_ids
        self._max_slot_retries = settings.max_slot_retries
        self._zone: str | None = None
        self._zone_known = False  # looked up for good (found, or definitely not there)
        self._http = ProviderHttp(
            provider=PROVIDER,
            base_url=settings.base_url.rstrip("/").removesuffix("/connect"),
            headers={
                "Authorization": f"Bearer {settings.token.get_secret_value()}",
                "Accept": "application/json",
            },
            error_message=error_message,
            timeout=settings.timeout,
            transport=transport,
            sleep=sleep,
            observe_date=skew.for_connection(connection_id).observe_date,  # clock skew: a metric, a warning
        )

    # -- the Adapter core: no Reader, no WebhookReceiver (nothing is documented to read) ---------

    def normalise(self, record: RawRecord) -> SourceRecord:
        return normalise_booking(record.payload, self._zone)

    def close(self) -> None:
        self._http.close()

    # -- the Writer ------------------------------------------------------------------------------

    def create(self, request: BookingRequest) -> SourceRecord:
        """Book the meeting's exact slot; SlotUnavailable when there is none or races run out."""
        meeting = request.meeting
        zone = self._calendar_zone()  # before any slot is read: wall times need the zone's rules
        entry_id = self._entries.get(meeting.attendee.email) if meeting.attendee.email else None
        name = booking_name(meeting, request.reference)
        attempts = 1 + self._max_slot_retries
        for attempt in range(1, attempts + 1):
            slot = self._exact_slot(meeting.start, meeting.end, zone)
            body = booking_body(
                slot,
                calendar_id=self._calendar_id,
                appointment_type_id=self._appointment_type_id,
                resource_id=self._resource_id,
                entry_id=entry_id,
                name=name,
            )
            try:
                response = self._call("POST", BOOKINGS_PATH, "booking a calendar slot", json=body)
            except ProviderRejected as exc:
                if not is_slot_race(exc):
                    raise
                log.info(
                    "rocketlead %s: slot %s was taken before our booking (attempt %d of %d); refetching",
                    self.connection_id,
                    body["startDateTime"],
                    attempt,
                    attempts,
                )
                continue
            return self._booked(response, body, zone, (meeting.start, meeting.end))
        raise SlotUnavailable(
            PROVIDER,
            f"the slot {iso_ms_z(meeting.start)} to {iso_ms_z(meeting.end)} on calendar {self._calendar_id} was "
            f"taken between availability and booking {attempts} times in a row; it is no longer free there, "
            "so book another time or free the slot in RocketLead",
            status=400,
        )

    def cancel(self, external_id: str) -> None:
        """Hard-delete the booking; one already gone (404) is what we wanted."""
        path = f"{BOOKINGS_PATH}{quote(external_id, safe='')}"
        try:
            self._call("DELETE", path, "deleting a booking")
        except ProviderNotFound as exc:
            log.warning(
                "rocketlead %s: booking %s is already gone (404; RocketLead also says 404 for a booking "
                "of another organization, so check the token if this repeats): %s",
                self.connection_id,
                external_id,
                exc.message,
            )

    # -- HTTP pieces ----------------------------------------------------------------------------

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        """One request; 401 and 403 become sentences that say what to fix."""
        try:
            return self._http.request(method, path, **kwargs)
        except ProviderAuthError as exc:
            if exc.status == 403:
                scope = SCOPE_FOR_METHOD.get(method, "admin")
                message = (
                    f"the token lacks the {scope!r} scope that {what} needs ({method} {path}: "
                    f"{exc.message}); give the token the {scope} scope in RocketLead Settings → API Tokens"
                )
            else:
                message = (
                    f"RocketLead refused the token ({exc.message}); it is missing, malformed, expired or "
                    "revoked: create a new one in RocketLead Settings → API Tokens"
                )
            raise ProviderAuthError(PROVIDER, message, status=exc.status) from exc

    def _exact_slot(self, start: datetime, end: datetime, zone: str | None) -> dict[str, Any]:
        params = {
            "calendarId": self._calendar_id,
            "appointmentTypeId": self._appointment_type_id,
            "start": iso_ms_z(start - AVAILABILITY_START_LOOKBACK),
            "end": iso_ms_z(end + AVAILABILITY_END_PADDING),
        }
        if self._resource_id:
            params["resourceId"] = self._resource_id
        response = self._call("GET", AVAILABILITY_PATH, "reading availability", params=params)
        slots = availability_slots(response_json(PROVIDER, response))
        if slots is None:
            raise ProviderUnavailable(
                PROVIDER,
                f"GET {AVAILABILITY_PATH} answered without a data array of slots",
                status=response.status_code,
            )
        slot, full = find_slot(
            slots,
            start,
            end,
            resource_id=self._resource_id,
            appointment_type_id=self._appointment_type_id,
            zone=zone,
            earliest=start,
        )
        if slot is None:
            why = "is full" if full else "is not offered"
            if not full and ambiguous_slots(slots, start, zone, earliest=start):
                why = (
                    f"is offered only as a local time that occurs twice in {zone} (clocks go back then) and "
                    "the answer does not say which of the two hours it is, so it is not booked"
                )
            raise SlotUnavailable(
                PROVIDER,
                f"the slot {iso_ms_z(start)} to {iso_ms_z(end)} {why} on calendar {self._calendar_id} for "
                f"appointment type {self._appointment_type_id}"
                + (f" and resource {self._resource_id}" if self._resource_id else "")
                + "; a mirrored booking keeps its exact time, so book another time or open that slot in RocketLead",
            )
        return slot

    def _booked(
        self,
        response: httpx.Response,
        sent: Mapping[str, Any],
        zone: str | None,
        at: tuple[datetime, datetime],
    ) -> SourceRecord:
        try:
            booking = booking_object(response_json(PROVIDER, response))
        except ProviderUnavailable as exc:
            raise AnswerLost(
                PROVIDER,
                f"POST {BOOKINGS_PATH} {exc.message}; the booking at {sent['startDateTime']} "
                "was probably made",
                status=response.status_code,
            ) from exc
        external_id = booking_id(booking)
        if external_id is None:
            raise AnswerLost(
                PROVIDER,
                f"POST {BOOKINGS_PATH} succeeded (HTTP {response.status_code}) but its answer has no booking id "
                f"(id, _id or bookingId); the booking at {sent['startDateTime']} was probably made: find it in "
                "RocketLead before booking again",
            )
        # What we sent fills what the answer leaves out; the answer wins where it speaks.
        merged = {**sent, **(booking if isinstance(booking, dict) else {})}
        try:
            return normalise_booking(merged, zone, at=at)
        except NormaliseError as exc:
            # The booking exists: losing its id to an odd answer would book it twice on retry.
            log.warning(
                "rocketlead %s: booking %s answered oddly (%s); recording it as sent",
                self.connection_id,
                external_id,
                exc,
            )
            return normalise_booking({**sent, "id": external_id}, zone, at=at)

    def _calendar_zone(self) -> str | None:
        """The calendar's IANA zone, looked up once and cached ("read this for any local-time math").

        Required before any slot is read: a lookup that fails for now (5xx, timeout, 429) raises
        ProviderUnavailable, so the write is retried later like any passing trouble, instead of
        slots being misread or called "not offered". A calendar that answers without a usable
        zone is cached as None: its slots are then read only where they carry an offset.
        """
        if self._zone_known:
            return self._zone
        path = f"{CALENDAR_PATH}{quote(self._calendar_id, safe='')}"
        try:
            response = self._call("GET", path, "reading the calendar's timezone")
        except (ProviderNotFound, ProviderAuthError, RateLimited):
            raise
        except ProviderRejected as exc:
            raise ProviderRejected(
                PROVIDER,
                f"calendar {self._calendar_id} could not be read for its timezone "
                f"({exc.message}); check calendar_id",
                status=exc.status,
            ) from exc
        except ProviderError as exc:
            raise ProviderUnavailable(
                PROVIDER,
                f"the timezone of calendar {self._calendar_id} is needed to read "
                f"slot times and could not be looked up for now ({exc}); retried "
                "later",
                status=exc.status,
            ) from exc
        zone = calendar_zone(response_json(PROVIDER, response))
        if zone is None:
            log.warning(
                "rocketlead %s: calendar %s names no valid IANA timezone; slots written without an "
                "offset cannot be read and will not be booked",
                self.connection_id,
                self._calendar_id,
            )
        self._zone, self._zone_known = zone, True
        return self._zone
