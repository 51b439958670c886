"""RocketLead: a write-only target. Finds the exact slot, books it, and deletes bookings.

Follows RocketLead's developer documentation (https://docs.rocketlead.io/developers/connect-api/):
Connect API overview, Authentication & scopes, Bookings (the whole page, with the complete
booking response), Availability, Lookups, Race conditions & idempotency, Workflows, Automation
triggers. Ambiguities, and the reading taken:

* Nothing is read. The docs document no list or get endpoint for bookings and no webhooks to
  third parties (the automation triggers run flows inside RocketLead; ingress webhooks are
  inbound to it). Capabilities are CREATE and CANCEL; `read()` yields no page (so nothing is
  ever called vanished) and `parse_webhook` refuses every delivery.
* No RESCHEDULE. No update endpoint is documented, so moving a booking is a new booking plus a
  hard delete. The worker's reconcile does exactly that (RECREATE: create, then cancel the old
  one) as its own step; doing it here too would hide a half-done move inside one call.
  `reschedule()` raises NotImplementedError. Known limit: on a resource with capacity 1, a move
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
* Timezone. "Calendars carry IANA tzdata": the calendar is looked up once
  (`GET /connect/calendar/{id}`, documented only as an object) and its zone taken from
  `timezone`, `timeZone` or `tz` when that is a valid IANA name; else the meeting's timezone is
  None. The lookup is decoration: when it fails, booking goes on without it. The zone is also
  used to read a time written without an offset; without a zone such a time is refused.
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
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from pydantic import ValidationError

from bookingsync.adapters.base import BookingRequest, Capability, Page, RawRecord, ReadContext, WebhookDelivery
from bookingsync.adapters.http import ProviderHttp, response_json
from bookingsync.models.errors import (
    AnswerLost,
    ConfigError,
    NormaliseError,
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderRejected,
    ProviderUnavailable,
    SlotUnavailable,
    WebhookMalformed,
)
from bookingsync.models.meeting import Meeting, MeetingStatus, Person, SourceRecord, normalise_email

log = logging.getLogger(__name__)

PROVIDER = "rocketlead"
TOKEN_PREFIX = "rocketlead_"  # "Anything that doesn't start with rocketlead_ is rejected with 401"
AVAILABILITY_PATH = "/connect/availability/"
BOOKINGS_PATH = "/connect/calendar_bookings/"
CALENDAR_PATH = "/connect/calendar/"
# Room after the meeting's end in the availability query, whose bounds' semantics are undocumented.
AVAILABILITY_END_PADDING = timedelta(hours=1)
SLOT_TAKEN = "no longer available"  # from "The selected time slot is no longer available"
ID_KEYS = ("id", "_id", "bookingId")
ZONE_KEYS = ("timezone", "timeZone", "tz")
# How our reference is written into a booking's name, and read back from it.
REFERENCE_FORMAT = " [bookingsync {}]"
REFERENCE_PATTERN = re.compile(r" ?\[bookingsync ([^\]\s]+)\]$")
# What each scope allows (Authentication & scopes), for 403 messages.
SCOPE_FOR_METHOD = {"GET": "read", "POST": "write", "DELETE": "admin"}


# -- pure: times, slots, bookings ---------------------------------------------------------------


def wire_time(value: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and Z, as JavaScript's toISOString writes it."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_time(value: Any, zone: str | None = None) -> datetime | None:
    """An ISO 8601 string as an aware UTC datetime; a time without offset is read in `zone`.

    None when the value is not a time, or has no offset and no zone is known.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        if zone is None:
            return None
        parsed = parsed.replace(tzinfo=ZoneInfo(zone))
    return parsed.astimezone(UTC)


def valid_zone(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return value.strip()


def calendar_zone(body: Any) -> str | None:
    """The IANA zone of a `GET /connect/calendar/{id}` answer, if it names a valid one."""
    if isinstance(body, dict) and isinstance(body.get("data"), dict) and not any(k in body for k in ZONE_KEYS):
        body = body["data"]
    if not isinstance(body, dict):
        return None
    return next((zone for zone in (valid_zone(body.get(k)) for k in ZONE_KEYS) if zone), None)


def availability_slots(body: Any) -> list[Any] | None:
    """The `data` array of an availability answer (a bare array is accepted too), else None."""
    if isinstance(body, dict):
        body = body.get("data")
    return body if isinstance(body, list) else None


def find_slot(slots: list[Any], start: datetime, end: datetime, *, resource_id: str | None,
              appointment_type_id: str, zone: str | None) -> tuple[dict[str, Any] | None, bool]:
    """The first bookable slot at exactly start–end, and whether one existed there but was full."""
    full = False
    for slot in slots:
        if not isinstance(slot, dict):
            continue
        if (parse_time(slot.get("startDateTime"), zone), parse_time(slot.get("endDateTime"), zone)) != (start, end):
            continue
        if resource_id is not None and slot.get("resourceId") not in (None, resource_id):
            continue
        if slot.get("appointmentTypeId") not in (None, appointment_type_id):
            continue
        if slot.get("available") is True:
            return slot, full
        full = True
    return None, full


def booking_name(meeting: Meeting, reference: str | None = None) -> str | None:
    name = meeting.title or meeting.attendee.name or meeting.attendee.email
    if reference is None:
        return name
    return (name or "Meeting") + REFERENCE_FORMAT.format(reference)


def name_reference(name: Any) -> tuple[str | None, str | None]:
    """A booking name split into the title and the reference bookingsync planted in it (if any)."""
    text = _text(name)
    if text is None:
        return None, None
    found = REFERENCE_PATTERN.search(text)
    if found is None:
        return text, None
    return text[:found.start()].strip() or None, found.group(1)


def booking_body(slot: Mapping[str, Any], *, calendar_id: str, appointment_type_id: str,
                 resource_id: str | None, entry_id: str | None, name: str | None) -> dict[str, Any]:
    """The modern `POST /connect/calendar_bookings/` body for `slot`, absent values omitted."""
    body = {
        "calendarId": calendar_id,
        "appointmentTypeId": appointment_type_id,
        "resourceId": resource_id or _text(slot.get("resourceId")),
        "resourceSlotId": _text(slot.get("resourceSlotId")),
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


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _email(value: Any) -> str | None:
    try:
        return normalise_email(value) if isinstance(value, str) else None
    except ValueError:
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
        if isinstance(kind, str) and field_id in values and (
                kind not in found or spec.get("primaryOfSpecialType") is True):
            found[kind] = values[field_id]
    name = found.get("name") or " ".join(p for p in (found.get("firstName"), found.get("lastName")) if p) or None
    return Person(email=_email(found.get("email")), name=name, phone=found.get("phone"))


def normalise_booking(payload: Any, timezone: str | None = None) -> SourceRecord:
    """A RocketLead booking object as a canonical `SourceRecord`; `timezone` is the calendar's."""
    payload = booking_object(payload)
    if not isinstance(payload, dict):
        raise NormaliseError(f"a RocketLead booking must be a JSON object, not {type(payload).__name__}")
    external_id = booking_id(payload)
    if external_id is None:
        raise NormaliseError("the RocketLead booking has no id (neither id, _id nor bookingId)")
    zone = valid_zone(timezone)
    times = {}
    for key in ("startDateTime", "endDateTime"):
        times[key] = parse_time(payload.get(key), zone)
        if times[key] is None:
            raise NormaliseError(
                f"the RocketLead booking {external_id} has {key} {payload.get(key)!r}, which is not an "
                "ISO 8601 time with an offset (and no calendar timezone is known to read it in)"
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
        return SourceRecord(external_id=external_id, meeting=meeting, reference=reference,
                            source_updated_at=parse_time(payload.get("createdAt"), zone))
    except ValidationError as exc:
        reasons = "; ".join(err["msg"] for err in exc.errors())
        raise NormaliseError(f"the RocketLead booking {external_id} cannot be used: {reasons}") from exc


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


class RocketLeadAdapter:
    provider: ClassVar[str] = PROVIDER
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.CREATE, Capability.CANCEL})

    def __init__(
        self,
        *,
        connection_id: str,
        base_url: str,
        token: str,
        calendar_id: str,
        appointment_type_id: str,
        resource_id: str | None = None,
        table_entry_ids: Mapping[str, str] | None = None,
        max_slot_retries: int = 3,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 15.0,
    ) -> None:
        where = f"connection {connection_id!r}"
        token = (token or "").strip()
        if not token:
            raise ConfigError(f"{where}: the RocketLead token is empty; set token (e.g. token = \"env:ROCKETLEAD_TOKEN\")")
        if not token.startswith(TOKEN_PREFIX):
            raise ConfigError(f"{where}: the RocketLead token must start with {TOKEN_PREFIX!r} (RocketLead "
                              "rejects any other); copy it from RocketLead Settings → API Tokens")
        if not base_url.startswith(("https://", "http://")):
            raise ConfigError(f"{where}: base_url {base_url!r} must start with https://")
        for key, value in (("calendar_id", calendar_id), ("appointment_type_id", appointment_type_id)):
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{where}: {key} is empty; set it to the id from GET /connect/calendar/ "
                                  "or /connect/appointment_types/")
        if resource_id is not None and (not isinstance(resource_id, str) or not resource_id.strip()):
            raise ConfigError(f"{where}: resource_id is empty; remove it or set it to an id from GET /connect/resources/")
        if isinstance(max_slot_retries, bool) or not isinstance(max_slot_retries, int) or max_slot_retries < 0:
            raise ConfigError(f"{where}: max_slot_retries must be a whole number, zero or more")
        entries: dict[str, str] = {}
        for email, entry_id in (table_entry_ids or {}).items():
            try:
                key = normalise_email(email)
            except ValueError as exc:
                raise ConfigError(f"{where}: table_entry_ids has {email!r}, which is not an email address") from exc
            if key is None or not isinstance(entry_id, str) or not entry_id.strip():
                raise ConfigError(f"{where}: table_entry_ids needs an email and a lead id in each entry, not {email!r}")
            entries[key] = entry_id.strip()
        self.connection_id = connection_id
        self._calendar_id = calendar_id.strip()
        self._appointment_type_id = appointment_type_id.strip()
        self._resource_id = resource_id.strip() if resource_id else None
        self._entries = entries
        self._max_slot_retries = max_slot_retries
        self._zone: str | None = None
        self._zone_known = False  # looked up for good (found, or definitely not there)
        self._http = ProviderHttp(
            provider=PROVIDER,
            base_url=base_url.rstrip("/").removesuffix("/connect"),
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            error_message=error_message,
            timeout=timeout,
            transport=transport,
            sleep=sleep,
        )

    # -- the Adapter half: nothing to read ----------------------------------------------------

    def read(self, cursor: dict[str, Any] | None, context: ReadContext) -> Iterator[Page]:
        """No list endpoint is documented: no page, and so no sweep that could call anything gone."""
        yield from ()

    def normalise(self, record: RawRecord) -> SourceRecord:
        return normalise_booking(record.payload, self._zone)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime, *,
                      method: str = "POST", url: str = "") -> WebhookDelivery:
        raise WebhookMalformed("RocketLead sends no webhooks to other services (its automation triggers run "
                               "inside RocketLead); this connection only books and cancels")

    def close(self) -> None:
        self._http.close()

    # -- the Writer half ------------------------------------------------------------------------

    def create(self, request: BookingRequest) -> SourceRecord:
        """Book the meeting's exact slot; SlotUnavailable when there is none or races run out."""
        meeting = request.meeting
        zone = self._calendar_zone()
        entry_id = self._entries.get(meeting.attendee.email) if meeting.attendee.email else None
        name = booking_name(meeting, request.reference)
        attempts = 1 + self._max_slot_retries
        for attempt in range(1, attempts + 1):
            slot = self._exact_slot(meeting.start, meeting.end, zone)
            body = booking_body(slot, calendar_id=self._calendar_id, appointment_type_id=self._appointment_type_id,
                                resource_id=self._resource_id, entry_id=entry_id, name=name)
            try:
                response = self._call("POST", BOOKINGS_PATH, "booking a calendar slot", json=body)
            except ProviderRejected as exc:
                if not is_slot_race(exc):
                    raise
                log.info("rocketlead %s: slot %s was taken before our booking (attempt %d of %d); refetching",
                         self.connection_id, body["startDateTime"], attempt, attempts)
                continue
            return self._booked(response, body, zone)
        raise SlotUnavailable(
            PROVIDER,
            f"the slot {wire_time(meeting.start)} to {wire_time(meeting.end)} on calendar {self._calendar_id} was "
            f"taken between availability and booking {attempts} times in a row; it is no longer free there, "
            "so book another time or free the slot in RocketLead",
            status=400,
        )

    def reschedule(self, external_id: str, request: BookingRequest) -> SourceRecord:
        raise NotImplementedError("RocketLead documents no way to move a booking; book the new time with "
                                  "create() and delete the old one with cancel()")

    def cancel(self, external_id: str) -> None:
        """Hard-delete the booking; one already gone (404) is what we wanted."""
        path = f"{BOOKINGS_PATH}{quote(external_id, safe='')}"
        try:
            self._call("DELETE", path, "deleting a booking")
        except ProviderNotFound as exc:
            log.warning("rocketlead %s: booking %s is already gone (404; RocketLead also says 404 for a booking "
                        "of another organization, so check the token if this repeats): %s",
                        self.connection_id, external_id, exc.message)

    # -- HTTP pieces ----------------------------------------------------------------------------

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        """One request; 401 and 403 become sentences that say what to fix."""
        try:
            return self._http.request(method, path, **kwargs)
        except ProviderAuthError as exc:
            if exc.status == 403:
                scope = SCOPE_FOR_METHOD.get(method, "admin")
                message = (f"the token lacks the {scope!r} scope that {what} needs ({method} {path}: "
                           f"{exc.message}); give the token the {scope} scope in RocketLead Settings → API Tokens")
            else:
                message = (f"RocketLead refused the token ({exc.message}); it is missing, malformed, expired or "
                           "revoked: create a new one in RocketLead Settings → API Tokens")
            raise ProviderAuthError(PROVIDER, message, status=exc.status) from exc

    def _exact_slot(self, start: datetime, end: datetime, zone: str | None) -> dict[str, Any]:
        params = {"calendarId": self._calendar_id, "appointmentTypeId": self._appointment_type_id,
                  "start": wire_time(start), "end": wire_time(end + AVAILABILITY_END_PADDING)}
        if self._resource_id:
            params["resourceId"] = self._resource_id
        response = self._call("GET", AVAILABILITY_PATH, "reading availability", params=params)
        slots = availability_slots(response_json(PROVIDER, response))
        if slots is None:
            raise ProviderUnavailable(PROVIDER, f"GET {AVAILABILITY_PATH} answered without a data array of slots",
                                      status=response.status_code)
        slot, full = find_slot(slots, start, end, resource_id=self._resource_id,
                               appointment_type_id=self._appointment_type_id, zone=zone)
        if slot is None:
            why = "is full" if full else "is not offered"
            raise SlotUnavailable(
                PROVIDER,
                f"the slot {wire_time(start)} to {wire_time(end)} {why} on calendar {self._calendar_id} for "
                f"appointment type {self._appointment_type_id}"
                + (f" and resource {self._resource_id}" if self._resource_id else "")
                + "; a mirrored booking keeps its exact time, so book another time or open that slot in RocketLead",
            )
        return slot

    def _booked(self, response: httpx.Response, sent: Mapping[str, Any], zone: str | None) -> SourceRecord:
        try:
            booking = booking_object(response_json(PROVIDER, response))
        except ProviderUnavailable as exc:
            raise AnswerLost(PROVIDER, f"POST {BOOKINGS_PATH} {exc.message}; the booking at {sent['startDateTime']} "
                                       "was probably made", status=response.status_code) from exc
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
            return normalise_booking(merged, zone)
        except NormaliseError as exc:
            # The booking exists: losing its id to an odd answer would book it twice on retry.
            log.warning("rocketlead %s: booking %s answered oddly (%s); recording it as sent",
                        self.connection_id, external_id, exc)
            return normalise_booking({**sent, "id": external_id}, zone)

    def _calendar_zone(self) -> str | None:
        """The calendar's IANA zone, looked up once; a failed lookup only costs the decoration."""
        if self._zone_known:
            return self._zone
        path = f"{CALENDAR_PATH}{quote(self._calendar_id, safe='')}"
        try:
            response = self._http.request("GET", path)
            self._zone = calendar_zone(response_json(PROVIDER, response))
            self._zone_known = True
        except (ProviderNotFound, ProviderRejected) as exc:
            log.warning("rocketlead %s: no timezone for calendar %s (%s)", self.connection_id, self._calendar_id, exc)
            self._zone_known = True
        except ProviderError as exc:  # passing trouble, or a token the next call will name: try again later
            log.warning("rocketlead %s: calendar lookup failed for now (%s)", self.connection_id, exc)
        return self._zone
