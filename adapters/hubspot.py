"""HubSpot: CRM meetings read by polling, webhooks verified, bookings made through a meeting link.

Follows HubSpot's developer documentation: the CRM Meetings API 2026-03 OpenAPI reference (`GET
/crm/objects/2026-03/meetings`, https://developers.hubspot.com/docs/api/crm/meetings), the
Scheduler Meetings API 2026-03 reference (booking info, availability page, `POST
…/meeting-links/book`, https://developers.hubspot.com/docs/api-reference/2026-03/scheduler/guide),
the Webhooks API 2026-03 reference (event types), "Validating requests from HubSpot" (v3
signature, in hubspot_signature.py, https://developers.hubspot.com/docs/api/webhooks/validating-requests),
the error handling and usage guidelines pages (https://developers.hubspot.com/docs/api/usage-details).
Ambiguities, and the reading taken:

* Reading. Every poll is a full pass: the list of live meetings (`archived=false`) and then the
  list of archived ones (`archived=true`), each paged with `limit` and `paging.next.after`. The
  list documents no order and no change filter, and the search endpoint (`hs_lastmodifieddate
  GT …`) is documented only as a schema: its limits, its consistency and whether the property
  is filterable are not said, and it never returns archived meetings. A full pass costs
  requests but cannot skip a change; the store's content hash makes the re-read harmless.
  Cursor: `{"phase": "active" | "archived", "after": token | None}`, saved after every page; a
  crash resumes at that page, and the pass that ends with the archived list leaves
  `{"phase": "active", "after": None}`, so the next poll starts over. A resumed token that
  HubSpot refuses (4xx other than auth) restarts that list from its beginning instead of
  wedging the connection; a `next.after` equal to the token just used ends the list (no loop).
* Deletions come from the archived list as records (archived → `cancelled`), never from
  absence: no `Sweep` is emitted, so a paging fault cannot cancel a live meeting. The flag is
  the record's own `archived`/`archivedAt`, not the list it came from (a server ignoring
  `archived=true` must not cancel everything). A meeting purged from the recycle bin before any
  poll saw it archived is not noticed: the residual risk of this design.
* `properties` is sent as one comma-separated value, as the parameter's description says
  ("A comma separated list"), not repeated per the schema's `explode: true`.
* Status: `archived` wins (cancelled); else `hs_meeting_outcome`: SCHEDULED and RESCHEDULED →
  scheduled, COMPLETED → completed, NO_SHOW → no_show, CANCELED/CANCELLED → cancelled (case and
  `-`/space insensitive); empty or absent → scheduled (a meeting logged without an outcome);
  anything else is a NormaliseError naming it (portals may define outcomes we cannot map).
* Times: `hs_meeting_start_time`/`hs_meeting_end_time` as ISO 8601 with an offset or as epoch
  milliseconds (the CRM guide allows both for `hs_timestamp`). Either missing is a NormaliseError:
  `hs_timestamp` is the activity time, not a reliable start. A CRM meeting carries no attendee
  email: its contacts are associations, by id, so `attendee` stays empty by default. With the
  option `read_attendees = true` a poll lists with `associations=contacts` and reads each
  associated contact's email (`GET …/contacts/{id}?properties=email`, kept in a bounded cache: a
  contact's email rarely changes, and a page of meetings often shares contacts); the first
  contact with an email is the attendee, written into the raw record under
  `bookingsyncAttendeeEmail` so the stored raw says where it came from. Without it the identity
  rules (attendee + start, issue 16) cannot match a HubSpot meeting to the same demo booked
  elsewhere. It is an option, off by default, because the contacts read is outside the CRM
  meetings and scheduler OpenAPI files we follow (the guide names the crm.objects.contacts.read
  scope; the same read confirms a lost booking below). The owner is an id, not an email, so `hosts` stay empty; the conference URL is `hs_meeting_external_url`, else
  `hs_meeting_location`, whichever is an http(s) URL. `archived: true` means cancelled;
  `archivedAt` counts only when `archived` is absent (a restored meeting says `archived: false`).
* Webhooks: the body is a JSON array of events (one object is accepted too) with ids, never a
  whole record, and `parse_webhook` must not call HubSpot. A record without start and end cannot
  be normalised (it would only be quarantined), so deliveries carry no records: meeting events
  (`object.*` with `objectTypeId` "0-47") are `handled`, the rest are not, and the next poll,
  which re-reads everything including archived meetings, applies the change. The delivery id is
  `portalId.subscriptionId.eventId` for one event and a hash of those triples for a batch, so a
  retry (which bumps `attemptNumber`) is recognised as the same delivery.
* Booking (CREATE): `GET …/book/{slug}` (durations, form fields, consent), then `GET
  …/book/availability-page/{slug}` month by month (`monthOffset`, while `hasMore` and the slots
  have not passed the start) for a slot of exactly the meeting's start and length; none →
  SlotUnavailable. Then `POST …/meeting-links/book`. `duration` is sent in milliseconds: the
  booking-info `durations`, `meetingDurationMillis` and the book reference page all use
  milliseconds; the OpenAPI's "in minutes" on `ExternalMeetingBooking` contradicts them. The
  response's `start`/`end` are trusted over our request (a mismatch is logged), so the store
  links what HubSpot actually holds. `legalConsentResponses` (required) is sent empty: we never
  consent for a person, and a link that requires consent (a required checkbox, or
  `processingConsentType` REQUIRED_CHECKBOX) or a required form field we cannot fill is refused
  before booking. `likelyAvailableUserIds` (required) are the link's users not busy during the
  slot. Name: `firstName` is the attendee name's first word, `lastName` the rest.
* A conflict answer (409, or a 4xx whose message says the time is no longer available/taken)
  re-reads availability and tries once more while the slot is still offered, then raises
  SlotUnavailable. A 5xx or timeout on the POST is not replayed (no idempotency key); the slot
  check makes a later retry answer SlotUnavailable instead of booking twice.
* The booking answer has no CRM meeting id, only `calendarEventId` (and `contactId`). HubSpot
  keeps that id on the CRM meeting the booking makes as `hs_unique_id` ("A unique identifier
  for the meeting event", the scheduler spec), and the CRM read takes `idProperty` ("any unique
  property value"): right after booking we read `GET …/meetings/{calendarEventId}?idProperty=
  hs_unique_id` and link the mirror under the CRM id that polls and webhooks use. If HubSpot
  has not made the CRM record yet (404), the mirror is linked as `calendar-event:<id>` (never
  mistaken for a CRM id) and re-keyed when a read brings the CRM meeting. Every CRM meeting
  read carries `reference = calendar-event:<hs_unique_id>`, so a read of our own booking is
  recognised as our echo. The request's own `reference` has no field in the booking request and
  is not sent: the booking cannot carry it.
* A booking whose answer was lost (FIND_BOOKING): its calendar event id is unknown, so the CRM
  search (`POST …/meetings/search`) looks for meetings at exactly the start (`hs_meeting_start_time
  EQ`, epoch ms) that carry an `hs_unique_id` (made through a meeting link) and end where ours
  does; each is confirmed by its associated contact's email (`associations=contacts`, then the
  contact's CRM record `GET /crm/objects/2026-03/contacts/{id}`, the CRM objects pattern the
  meetings spec follows). One confirmed → that booking; none → not made.
* Moving and cancelling a mirror (RESCHEDULE, CANCEL): the scheduler API documents no reschedule
  and no cancel, so the CRM meeting is changed as the CRM documents: `PATCH …/meetings/{id}` with
  the new `hs_meeting_start_time`/`hs_meeting_end_time`/`hs_timestamp`, and for a cancel
  `hs_meeting_outcome = CANCELED` (a property change, kept in the CRM's history, rather than an
  archive to the recycle bin). Nothing documents that either withdraws or moves the calendar
  invitation HubSpot sent; the CRM record, which the sales team works from, is right.
* Errors: `{category, message, correlationId, errors[].message, …}`, all optional, read into
  one line. HubSpot documents a burst limit of 100 calls per 10 seconds; we pace at
  `requests_per_second` (default 10) and the shared policy honours a Retry-After if one comes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
from pydantic import Field, SecretStr, ValidationError, field_validator

from bookingsync.adapters.base import (
    BookingShape,
    BookingRequest,
    Capability,
    Page,
    RawRecord,
    ReadContext,
    WebhookDelivery,
)
from bookingsync.adapters.fields import as_text, as_zone, unusable
from bookingsync.adapters.http import ProviderHttp, response_json
from bookingsync.adapters.settings import AdapterSettings, blank
from bookingsync.adapters.hubspot_signature import verify_v3
from bookingsync.adapters.time_formats import epoch_ms, iso_z
from bookingsync.adapters.wall_time import DATE_ONLY, date_only
from bookingsync.models.errors import (
    AnswerLost,
    ProviderError,
    NormaliseError,
    ProviderNotFound,
    ProviderRejected,
    ProviderUnavailable,
    SlotUnavailable,
    WebhookMalformed,
)
from bookingsync.models.meeting import Meeting, MeetingStatus, Person, SourceRecord

log = logging.getLogger(__name__)

PROVIDER = "hubspot"
DEFAULT_BASE_URL = "https://api.hubapi.com"
MEETINGS_PATH = "/crm/objects/2026-03/meetings"
BOOK_PATH = "/scheduler/2026-03/meetings/meeting-links/book"
MAX_PAGE_SIZE = 100  # the CRM list's customary maximum; the OpenAPI names only the default (10)
# HubSpot's API usage guidelines: a burst limit of 100 calls per 10 seconds per app and portal.
DEFAULT_REQUESTS_PER_SECOND = 10.0
MEETING_OBJECT_TYPE = "0-47"
PROPERTIES = (
    "hs_meeting_title",
    "hs_meeting_start_time",
    "hs_meeting_end_time",
    "hs_meeting_outcome",
    "hs_meeting_external_url",
    "hs_meeting_location",
    "hs_timestamp",
    "hs_lastmodifieddate",
    "hs_unique_id",
)
CONTACTS_PATH = "/crm/objects/2026-03/contacts"
# The associated contact's email, added to a listed meeting by `read` (see the module docstring).
ATTENDEE_KEY = "bookingsyncAttendeeEmail"
# Contact emails remembered per adapter; the oldest is forgotten past this (bounded memory).
CONTACT_CACHE_SIZE = 10_000
SEARCH_LIMIT = 100
ACTIVE, ARCHIVED = "active", "archived"
# How many months of availability pages we look through for the slot (a meeting link
# advertises weeks ahead, rarely a year).
MAX_MONTH_OFFSET = 12
# Booking attempts while the slot is still offered but HubSpot answers with a conflict.
BOOKING_ATTEMPTS = 2
CALENDAR_EVENT_PREFIX = "calendar-event:"
EARLIEST_MS = 946_684_800_000  # 2000-01-01: smaller "milliseconds" are seconds sent by mistake

OUTCOMES = {
    "SCHEDULED": MeetingStatus.SCHEDULED,
    "RESCHEDULED": MeetingStatus.SCHEDULED,
    "COMPLETED": MeetingStatus.COMPLETED,
    "NO_SHOW": MeetingStatus.NO_SHOW,
    "CANCELED": MeetingStatus.CANCELLED,
    "CANCELLED": MeetingStatus.CANCELLED,
}
# Form-field names (lower case) we can fill from the canonical attendee.
_NAME_FIELDS = {
    "email": "email",
    "firstname": "first",
    "lastname": "last",
    "phone": "phone",
    "mobilephone": "phone",
}
_SLOT_TAKEN = re.compile(
    r"no longer available|not available|unavailable|already booked|taken|conflict|busy", re.IGNORECASE
)


# -- normalise: pure ----------------------------------------------------------------------------


def _time(value: Any, what: str, record_id: str) -> datetime | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = str(value).strip()
    if text.isdigit():
        millis = int(text)
        if millis < EARLIEST_MS:
            raise NormaliseError(f"the HubSpot meeting {record_id}'s {what} {text} is not epoch milliseconds")
        return datetime.fromtimestamp(millis / 1000, UTC)
    if date_only(text):
        raise NormaliseError(f"the HubSpot meeting {record_id}'s {what} {text!r} {DATE_ONLY}")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise NormaliseError(
            f"the HubSpot meeting {record_id}'s {what} {text!r} is not an ISO 8601 time"
        ) from exc
    if parsed.tzinfo is None:
        raise NormaliseError(f"the HubSpot meeting {record_id}'s {what} {text!r} has no UTC offset")
    return parsed.astimezone(UTC)


def _required_time(value: Any, what: str, record_id: str) -> datetime:
    parsed = _time(value, what, record_id)
    if parsed is None:
        raise NormaliseError(f"the HubSpot meeting {record_id} has no {what}")
    return parsed


def _status(obj: Mapping[str, Any], properties: Mapping[str, Any], record_id: str) -> MeetingStatus:
    archived = obj.get("archived")
    if archived is True or (archived is None and as_text(obj.get("archivedAt"))):
        return MeetingStatus.CANCELLED  # an explicit `archived: false` (restored) beats a stale archivedAt
    raw = properties.get("hs_meeting_outcome")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return MeetingStatus.SCHEDULED
    key = re.sub(r"[\s-]+", "_", str(raw).strip().upper())
    status = OUTCOMES.get(key)
    if status is None:
        known = ", ".join(sorted(OUTCOMES))
        raise NormaliseError(
            f"the HubSpot meeting {record_id} has outcome {raw!r}, which is not one of {known}"
        )
    return status


def _http_url(value: Any) -> str | None:
    text = as_text(value)
    return text if text and text.lower().startswith(("https://", "http://")) else None


def _record_id(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return str(value).strip() or None


def _contact_ids(obj: Mapping[str, Any]) -> list[str]:
    """The ids of a CRM object's associated contacts (`associations.contacts.results[].id`)."""
    contacts = ((obj.get("associations") or {}).get("contacts") or {}).get("results")
    ids = (
        [_record_id(c.get("id")) for c in contacts if isinstance(c, dict)]
        if isinstance(contacts, list)
        else []
    )
    return [i for i in ids if i is not None]


def normalise_crm_meeting(obj: Any) -> SourceRecord:
    """A CRM meeting object `{id, properties{…}, createdAt, updatedAt, archived}`."""
    if not isinstance(obj, dict):
        raise NormaliseError("the HubSpot meeting is not a JSON object")
    record_id = _record_id(obj.get("id"))
    if record_id is None:
        raise NormaliseError("the HubSpot meeting has no id")
    properties = obj.get("properties")
    if not isinstance(properties, dict):
        raise NormaliseError(f"the HubSpot meeting {record_id} has no properties object")
    start = _required_time(properties.get("hs_meeting_start_time"), "hs_meeting_start_time", record_id)
    end = _required_time(properties.get("hs_meeting_end_time"), "hs_meeting_end_time", record_id)
    updated = _time(obj.get("updatedAt"), "updatedAt", record_id) or _time(
        properties.get("hs_lastmodifieddate"), "hs_lastmodifieddate", record_id
    )
    try:
        meeting = Meeting(
            status=_status(obj, properties, record_id),
            title=as_text(properties.get("hs_meeting_title")),
            start=start,
            end=end,
            conference_url=_http_url(properties.get("hs_meeting_external_url"))
            or _http_url(properties.get("hs_meeting_location")),
            attendee=Person(email=as_text(obj.get(ATTENDEE_KEY))),
        )
        event_id = as_text(properties.get("hs_unique_id"))
        return SourceRecord(
            external_id=record_id,
            meeting=meeting,
            source_updated_at=updated,
            reference=CALENDAR_EVENT_PREFIX + event_id if event_id else None,
        )
    except ValidationError as exc:
        raise unusable(f"the HubSpot meeting {record_id}", exc) from exc


def _form_value(fields: Any, *names: str) -> str | None:
    for field_ in fields if isinstance(fields, list) else ():
        if isinstance(field_, dict) and str(field_.get("name", "")).lower() in names:
            value = as_text(field_.get("value"))
            if value:
                return value
    return None


def normalise_booking(answer: Any, fallback: Meeting | None = None) -> SourceRecord:
    """The answer of `POST …/meeting-links/book`; `fallback` is the meeting we asked to book."""
    if not isinstance(answer, dict):
        raise NormaliseError("the HubSpot booking answer is not a JSON object")
    event_id = _record_id(answer.get("calendarEventId"))
    if event_id is None:
        raise NormaliseError("the HubSpot booking answer has no calendarEventId")
    label = f"booking {event_id}"
    start = _required_time(answer.get("start"), "start", label)
    end = _time(answer.get("end"), "end", label)
    if end is None:
        if fallback is None or fallback.start != start:
            raise NormaliseError(f"the HubSpot {label} has no end")
        end = start + (fallback.end - fallback.start)
    fields = answer.get("formFields")
    email = _form_value(fields, "email")
    first, last = _form_value(fields, "firstname"), _form_value(fields, "lastname")
    name = " ".join(part for part in (first, last) if part) or None
    known = fallback.attendee if fallback is not None else Person()
    attendee = Person(email=email or known.email, name=name or known.name, phone=known.phone)
    try:
        meeting = Meeting(
            status=MeetingStatus.SCHEDULED,
            title=as_text(answer.get("subject")),
            start=start,
            end=end,
            timezone=as_zone(answer.get("bookingTimezone"), PROVIDER)
            or (fallback.timezone if fallback else None),
            attendee=attendee,
            conference_url=_http_url(answer.get("webConferenceUrl")),
        )
        return SourceRecord(
            external_id=CALENDAR_EVENT_PREFIX + event_id,
            meeting=meeting,
            reference=CALENDAR_EVENT_PREFIX + event_id,
        )
    except ValidationError as exc:
        raise unusable(f"the HubSpot {label}", exc) from exc


def normalise_record(payload: Any) -> SourceRecord:
    if isinstance(payload, dict) and "properties" in payload:
        return normalise_crm_meeting(payload)
    if isinstance(payload, dict) and "calendarEventId" in payload:
        return normalise_booking(payload)
    raise NormaliseError("the HubSpot record is neither a CRM meeting (no 'properties') nor a booking answer")


# -- paging: pure -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Position:
    """Where a pass stands: which list, and the `after` token of its next page."""

    phase: str = ACTIVE
    after: str | None = None

    @classmethod
    def from_cursor(cls, cursor: Mapping[str, Any] | None) -> Position:
        if not cursor:
            return cls()
        phase, after = cursor.get("phase", ACTIVE), cursor.get("after")
        if phase not in (ACTIVE, ARCHIVED) or not (after is None or (isinstance(after, str) and after)):
            log.warning("hubspot: unusable cursor %r; starting a full pass", cursor)
            return cls()
        return cls(phase=phase, after=after)

    def cursor(self) -> dict[str, Any]:
        return {"phase": self.phase, "after": self.after}

    def following(self, next_after: str | None) -> Position:
        """The position after a page whose `paging.next.after` was `next_after`."""
        if next_after is not None and next_after != self.after:
            return Position(self.phase, next_after)
        if next_after is not None:
            log.warning("hubspot: paging.next.after repeats %r; ending the %s list", next_after, self.phase)
        return Position(ARCHIVED) if self.phase == ACTIVE else Position(ACTIVE)


def next_after(body: Mapping[str, Any]) -> str | None:
    paging = body.get("paging")
    nxt = paging.get("next") if isinstance(paging, dict) else None
    after = nxt.get("after") if isinstance(nxt, dict) else None
    if isinstance(after, int) and not isinstance(after, bool):
        after = str(after)
    return after if isinstance(after, str) and after else None


# -- booking: pure ------------------------------------------------------------------------------


def split_name(name: str | None) -> tuple[str, str]:
    words = (name or "").split()
    return (words[0], " ".join(words[1:])) if words else ("", "")


def booking_form(info: Any, meeting: Meeting, duration_ms: int, slug: str) -> list[dict[str, str]]:
    """The `formFields` to send, after checking the link can take this booking without a person."""
    params = info.get("customParams") if isinstance(info, dict) else None
    params = params if isinstance(params, dict) else {}
    durations = [d for d in params.get("durations") or [] if isinstance(d, int) and not isinstance(d, bool)]
    if durations and duration_ms not in durations:
        offered = ", ".join(f"{d / 60000:g}" for d in sorted(durations))
        raise ProviderRejected(
            PROVIDER,
            f"meeting link {slug!r} offers {offered} minute meetings; this one lasts "
            f"{duration_ms / 60000:g} minutes",
        )
    if params.get("legalConsentEnabled") is True:
        options = (
            params.get("legalConsentOptions") if isinstance(params.get("legalConsentOptions"), dict) else {}
        )
        boxes = options.get("communicationConsentCheckboxes") or []
        required_box = any(isinstance(b, dict) and b.get("required") is True for b in boxes)
        if required_box or options.get("processingConsentType") == "REQUIRED_CHECKBOX":
            raise ProviderRejected(
                PROVIDER,
                f"meeting link {slug!r} requires the attendee's legal consent, which "
                "bookingsync cannot give on their behalf; use a link without it",
            )
    first, last = split_name(meeting.attendee.name)
    known = {
        "email": meeting.attendee.email or "",
        "first": first,
        "last": last,
        "phone": meeting.attendee.phone or "",
    }
    form: list[dict[str, str]] = []
    missing: list[str] = []
    for item in params.get("formFields") or []:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        slot = _NAME_FIELDS.get(item["name"].lower())
        value = known[slot] if slot else ""
        if value:
            form.append({"name": item["name"], "value": value})
        elif item.get("isRequired") is True:
            missing.append(item["name"])
    if missing:
        raise ProviderRejected(
            PROVIDER,
            f"meeting link {slug!r} requires the form field(s) {', '.join(missing)}, "
            "which this meeting has no value for",
        )
    return form


def find_slot(page: Any, start_ms: int, duration_ms: int) -> tuple[bool, bool, bool]:
    """(slot offered, page reaches past the start, more pages) for one availability page."""
    link = page.get("linkAvailability") if isinstance(page, dict) else None
    link = link if isinstance(link, dict) else {}
    by_duration = link.get("linkAvailabilityByDuration")
    found = beyond = False
    for key, entry in by_duration.items() if isinstance(by_duration, dict) else ():
        if not isinstance(entry, dict):
            continue
        length = entry.get("meetingDurationMillis")
        if not isinstance(length, int):
            length = int(key) if str(key).isdigit() else None
        for slot in entry.get("availabilities") or []:
            if not isinstance(slot, dict):
                continue
            begin, finish = slot.get("startMillisUtc"), slot.get("endMillisUtc")
            if isinstance(begin, int) and begin > start_ms:
                beyond = True
            if length == duration_ms and begin == start_ms and finish == start_ms + duration_ms:
                found = True
    return found, beyond, link.get("hasMore") is True


def free_users(page: Any, start_ms: int, end_ms: int) -> list[str]:
    """User ids of the link whose busy times do not overlap [start, end)."""
    users: set[str] = set()
    for entry in (page.get("allUsersBusyTimes") if isinstance(page, dict) else None) or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("meetingsUser"), dict):
            continue
        user_id = _record_id(entry["meetingsUser"].get("userId")) or _record_id(
            entry["meetingsUser"].get("id")
        )
        busy = any(
            isinstance(b, dict)
            and isinstance(b.get("start"), int)
            and isinstance(b.get("end"), int)
            and b["start"] < end_ms
            and start_ms < b["end"]
            for b in entry.get("busyTimes") or []
        )
        if user_id and not busy:
            users.add(user_id)
    return sorted(users)


def _slot_taken(exc: ProviderRejected) -> bool:
    return exc.status == 409 or (
        exc.status is not None and 400 <= exc.status < 500 and bool(_SLOT_TAKEN.search(exc.message))
    )


# -- webhooks: pure -----------------------------------------------------------------------------


def _event_key(event: Mapping[str, Any]) -> str:
    return ".".join(str(event.get(k, "")) for k in ("portalId", "subscriptionId", "eventId"))


def parse_delivery(body: bytes) -> WebhookDelivery:
    """A verified delivery's events; ids only, so no records (see the module docstring)."""
    try:
        events = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookMalformed(f"the HubSpot delivery body is not JSON: {exc}") from exc
    if isinstance(events, dict):
        events = [events]
    if not isinstance(events, list) or not events:
        raise WebhookMalformed("the HubSpot delivery body is not a non-empty JSON array of events")
    types: set[str] = set()
    handled = False
    for event in events:
        if not isinstance(event, dict):
            raise WebhookMalformed("a HubSpot delivery event is not a JSON object")
        kind = event.get("subscriptionType")
        if not isinstance(kind, str) or not kind:
            raise WebhookMalformed("a HubSpot delivery event has no subscriptionType")
        if _record_id(event.get("eventId")) is None:
            raise WebhookMalformed("a HubSpot delivery event has no eventId")
        types.add(kind)
        if kind.startswith("object.") and str(event.get("objectTypeId", "")) == MEETING_OBJECT_TYPE:
            handled = True
    keys = sorted(_event_key(e) for e in events)
    delivery_id = (
        keys[0] if len(keys) == 1 else "batch-" + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:32]
    )
    return WebhookDelivery(
        delivery_id=delivery_id, event_type=",".join(sorted(types)), records=[], handled=handled
    )


# -- the adapter: the HTTP edge -----------------------------------------------------------------


def error_message(response: httpx.Response) -> str:
    """HubSpot's `{message, category, correlationId, errors[]}` envelope as one line."""
    body = response.json()
    if not isinstance(body, dict):
        return ""
    message = as_text(body.get("message")) or ""
    details = [
        d
        for d in (as_text(e.get("message")) for e in body.get("errors") or [] if isinstance(e, dict))
        if d and d != message
    ]
    text = "; ".join([message] + details if message else details)
    tags = [t for t in (as_text(body.get("category")),) if t]
    correlation = as_text(body.get("correlationId"))
    if correlation:
        tags.append(f"correlationId {correlation}")
    if not text:
        return ", ".join(tags)
    return f"{text} ({', '.join(tags)})" if tags else text


class HubSpotSettings(AdapterSettings):
    """What a HubSpot connection takes (README: Connection settings by provider)."""

    label: ClassVar[str] = "HubSpot"

    base_url: str = Field(default=DEFAULT_BASE_URL, description="HubSpot's API address")
    token: SecretStr = Field(description="a private app's access token (CRM meetings read/write, scheduler)")
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="the app's client secret, which signs webhooks (v3); without it every delivery is refused",
    )
    meeting_slug: str | None = Field(
        default=None,
        description="the meeting link mirrored bookings are made through (needed to be a route target)",
    )
    booking_timezone: str = Field(default="UTC", description="the IANA zone a booking is made in")
    booking_locale: str = Field(default="en-us", description="the locale a booking is made in")
    page_size: int = Field(
        default=MAX_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE, description="CRM meetings per page (at most 100)"
    )
    requests_per_second: float = Field(
        default=DEFAULT_REQUESTS_PER_SECOND,
        gt=0,
        description="our pace (HubSpot allows bursts of 100 per 10 s)",
    )
    timeout: float = Field(default=15.0, gt=0, description="seconds one request may take")
    read_attendees: bool = Field(
        default=False,
        description="read each CRM meeting's contact for its email (so identity can match by attendee); "
        "a call outside the OpenAPI files we follow, so off by default",
    )

    @field_validator("meeting_slug")
    @classmethod
    def _slug(cls, value: str | None) -> str | None:
        if blank(value):
            raise ValueError("meeting_slug is empty; set it to the meeting link's slug or leave it out")
        return value

    @field_validator("booking_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if as_zone(value, PROVIDER) is None:
            raise ValueError(f"booking_timezone {value!r} is not an IANA timezone")
        return value

    def booking_problem(self) -> str | None:
        if not self.meeting_slug:
            return (
                "set options.meeting_slug to the HubSpot meeting link that mirrored bookings are made through"
            )
        return None


class HubSpotAdapter:
    provider: ClassVar[str] = PROVIDER
    settings_model: ClassVar[type[AdapterSettings]] = HubSpotSettings
    shape: ClassVar[BookingShape] = BookingShape()  # epoch milliseconds, any length
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.LIST_CHANGES,
            Capability.RECEIVE_WEBHOOKS,
            Capability.CREATE,
            Capability.RESCHEDULE,
            Capability.CANCEL,
            Capability.FIND_BOOKING,
        }
    )
    # Fields besides the times that the move (`reschedule`, a CRM PATCH) writes to an existing
    # booking: worker/reconcile.py moves a mirror in step whose title differs, to push it.
    pushes: ClassVar[frozenset[str]] = frozenset({"title"})

    def __init__(
        self,
        *,
        connection_id: str,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        **values: Any,
    ) -> None:
        settings = HubSpotSettings.checked(connection_id, values)
        self.connection_id = connection_id
        self._secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
        self._slug = settings.meeting_slug.strip() if settings.meeting_slug else None
        self._timezone = settings.booking_timezone
        self._locale = settings.booking_locale
        self._page_size = settings.page_size
        self._read_attendees = settings.read_attendees
        self._contacts: dict[str, str | None] = {}  # contact id → email (CONTACT_CACHE_SIZE at most)
        self._http = ProviderHttp(
            provider=PROVIDER,
            base_url=settings.base_url.rstrip("/"),
            headers={
                "Authorization": f"Bearer {settings.token.get_secret_value()}",
                "Accept": "application/json",
            },
            error_message=error_message,
            timeout=settings.timeout,
            transport=transport,
            sleep=sleep,
            min_interval=1.0 / settings.requests_per_second,
        )

    # -- read ----------------------------------------------------------------------------------

    def read(self, cursor: dict[str, Any] | None, context: ReadContext) -> Iterator[Page]:
        position = Position.from_cursor(cursor)
        resumed = position.after is not None
        while True:
            try:
                body = self._list_page(position)
            except (ProviderRejected, ProviderNotFound) as exc:
                if not resumed:
                    raise
                # A saved token HubSpot no longer takes must not wedge the connection for good.
                log.warning(
                    "hubspot %s: the saved after token was refused (%s); restarting the %s list",
                    self.connection_id,
                    exc,
                    position.phase,
                )
                position = Position(position.phase)
                resumed = False
                continue
            resumed = False
            results = body["results"]
            if self._read_attendees:
                self._add_attendees(results)
            records = [
                RawRecord(
                    payload=item, external_id=_record_id(item.get("id")) if isinstance(item, dict) else None
                )
                for item in results
            ]
            following = position.following(next_after(body))
            yield Page(records=records, cursor=following.cursor())
            if following.phase != position.phase and position.phase == ARCHIVED:
                return
            position = following

    def _list_page(self, position: Position) -> dict[str, Any]:
        params: dict[str, Any] = {
            "limit": self._page_size,
            "properties": ",".join(PROPERTIES),
            "archived": "true" if position.phase == ARCHIVED else "false",
        }
        if position.after is not None:
            params["after"] = position.after
        if self._read_attendees:
            params["associations"] = "contacts"
        body = response_json(PROVIDER, self._http.request("GET", MEETINGS_PATH, params=params))
        if not isinstance(body, dict) or not isinstance(body.get("results"), list):
            raise ProviderUnavailable(PROVIDER, f"GET {MEETINGS_PATH} answered without a 'results' list")
        return body

    def normalise(self, record: RawRecord) -> SourceRecord:
        return normalise_record(record.payload)

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, now: datetime, *, method: str = "POST", url: str = ""
    ) -> WebhookDelivery:
        verify_v3(headers, body, self._secret, now, method=method, url=url)
        return parse_delivery(body)

    # -- write ---------------------------------------------------------------------------------

    def create(self, request: BookingRequest) -> SourceRecord:
        meeting = request.meeting
        if self._slug is None:
            raise ProviderRejected(
                PROVIDER,
                f"connection {self.connection_id!r} has no meeting_slug, so it cannot "
                "book; set options.meeting_slug to the meeting link to book through",
            )
        if meeting.attendee.email is None:
            raise ProviderRejected(
                PROVIDER, "the meeting has no attendee email, which a HubSpot booking needs"
            )
        slug_path = quote(self._slug, safe="")
        timezone = meeting.timezone or self._timezone
        start_ms, duration_ms = epoch_ms(meeting.start), epoch_ms(meeting.end) - epoch_ms(meeting.start)
        info = response_json(
            PROVIDER, self._http.request("GET", f"{BOOK_PATH}/{slug_path}", params={"timezone": timezone})
        )
        form = booking_form(info, meeting, duration_ms, self._slug)
        first, last = split_name(meeting.attendee.name)
        refusal: ProviderRejected | None = None
        for _ in range(BOOKING_ATTEMPTS):
            users = self._offered(slug_path, timezone, start_ms, duration_ms)
            body = {
                "slug": self._slug,
                "duration": duration_ms,
                "startTime": iso_z(meeting.start),
                "email": meeting.attendee.email,
                "firstName": first,
                "lastName": last,
                "formFields": form,
                "legalConsentResponses": [],
                "likelyAvailableUserIds": users,
                "timezone": timezone,
                "locale": self._locale,
            }
            try:
                response = self._http.request("POST", BOOK_PATH, json=body)
            except ProviderRejected as exc:
                if not _slot_taken(exc):
                    raise
                refusal = exc
                continue
            return self._booked(response, meeting)
        assert refusal is not None
        raise SlotUnavailable(
            PROVIDER,
            f"HubSpot refused the slot at {iso_z(meeting.start)}: {refusal.message}",
            status=refusal.status,
        )

    def _offered(self, slug_path: str, timezone: str, start_ms: int, duration_ms: int) -> list[str]:
        """The likely available user ids if the slot is offered; SlotUnavailable if it is not."""
        for offset in range(MAX_MONTH_OFFSET + 1):
            params: dict[str, Any] = {"timezone": timezone}
            if offset:
                params["monthOffset"] = offset
            page = response_json(
                PROVIDER,
                self._http.request("GET", f"{BOOK_PATH}/availability-page/{slug_path}", params=params),
            )
            found, beyond, more = find_slot(page, start_ms, duration_ms)
            if found:
                return free_users(page, start_ms, start_ms + duration_ms)
            if beyond or not more:
                break
        start = datetime.fromtimestamp(start_ms / 1000, UTC)
        raise SlotUnavailable(
            PROVIDER,
            f"meeting link {self._slug!r} does not offer {iso_z(start)} for {duration_ms / 60000:g} minutes",
        )

    def _booked(self, response: httpx.Response, meeting: Meeting) -> SourceRecord:
        try:
            record = normalise_booking(response_json(PROVIDER, response), fallback=meeting)
        except (NormaliseError, ProviderUnavailable) as exc:
            # Booked, but the answer cannot be linked: the booking must be found, not made again.
            raise AnswerLost(
                PROVIDER,
                f"HubSpot booked {iso_z(meeting.start)} but its answer cannot be read ({exc})",
                status=response.status_code,
            ) from exc
        if (record.meeting.start, record.meeting.end) != (meeting.start, meeting.end):
            log.warning(
                "hubspot %s: booked %s–%s but HubSpot holds %s–%s",
                self.connection_id,
                meeting.start,
                meeting.end,
                record.meeting.start,
                record.meeting.end,
            )
        try:
            crm = self._crm_meeting(record.external_id)
        except ProviderError as exc:
            log.info(
                "hubspot %s: the CRM meeting of %s cannot be read yet (%s); linking the calendar event",
                self.connection_id,
                record.external_id,
                exc,
            )
            return record
        return self._titled(crm, meeting) if crm is not None else record

    def _titled(self, crm: SourceRecord, meeting: Meeting) -> SourceRecord:
        """The booking carries the meeting link's subject; the meeting's own title is written onto
        its CRM record (`PATCH hs_meeting_title`). Booked either way: a failed PATCH is logged and
        the next converge pushes the title again (worker/reconcile.py compares it)."""
        if not meeting.title or crm.meeting.title == meeting.title:
            return crm
        try:
            self._http.request(
                "PATCH",
                f"{MEETINGS_PATH}/{quote(crm.external_id, safe='')}",
                json={"properties": {"hs_meeting_title": meeting.title}},
                idempotent=True,
            )
        except ProviderError as exc:
            log.warning(
                "hubspot %s: booked %s but could not set its title (%s)",
                self.connection_id,
                crm.external_id,
                exc,
            )
            return crm
        return crm.model_copy(update={"meeting": crm.meeting.model_copy(update={"title": meeting.title})})

    def _crm_meeting(self, external_id: str, *, associations: bool = False) -> SourceRecord | None:
        """The CRM meeting `external_id` names (a CRM id, or `calendar-event:<id>` read by
        `idProperty=hs_unique_id`); None when HubSpot has no such meeting (404)."""
        params: dict[str, Any] = {"properties": ",".join(PROPERTIES)}
        if external_id.startswith(CALENDAR_EVENT_PREFIX):
            external_id = external_id.removeprefix(CALENDAR_EVENT_PREFIX)
            params["idProperty"] = "hs_unique_id"
        if associations:
            params["associations"] = "contacts"
        try:
            body = response_json(
                PROVIDER,
                self._http.request("GET", f"{MEETINGS_PATH}/{quote(external_id, safe='')}", params=params),
            )
        except ProviderNotFound:
            return None
        try:
            return normalise_crm_meeting(body)
        except NormaliseError as exc:
            raise ProviderUnavailable(
                PROVIDER, f"the CRM meeting {external_id} cannot be read: {exc}"
            ) from exc

    def _crm_id(self, external_id: str) -> str:
        """The CRM id behind a mirror link, which may still be the calendar event id."""
        if not external_id.startswith(CALENDAR_EVENT_PREFIX):
            return external_id
        record = self._crm_meeting(external_id)
        if record is None:
            raise ProviderUnavailable(PROVIDER, f"HubSpot has no CRM meeting for {external_id} yet")
        return record.external_id

    def reschedule(self, external_id: str, request: BookingRequest) -> SourceRecord:
        """Move the CRM meeting (`PATCH`): the scheduler API documents no reschedule. The same
        PATCH carries the meeting's title (`pushes`): a title change reaches HubSpot this way."""
        meeting = request.meeting
        crm_id = self._crm_id(external_id)
        properties = {
            "hs_meeting_start_time": iso_z(meeting.start),
            "hs_meeting_end_time": iso_z(meeting.end),
            "hs_timestamp": iso_z(meeting.start),
        }
        if meeting.title:
            properties["hs_meeting_title"] = meeting.title
        self._http.request(
            "PATCH", f"{MEETINGS_PATH}/{quote(crm_id, safe='')}", json={"properties": properties}
        )
        try:
            record = self._crm_meeting(crm_id)
        except ProviderError as exc:
            log.warning(
                "hubspot %s: moved %s but could not read it back (%s)", self.connection_id, crm_id, exc
            )
            record = None
        if record is None:
            return SourceRecord(external_id=crm_id, meeting=meeting.model_copy(update={"attendee": Person()}))
        return record

    def cancel(self, external_id: str) -> None:
        """Mark the CRM meeting CANCELED (`PATCH`); one HubSpot no longer has (404) is gone already."""
        crm_id = self._crm_id(external_id)
        self._http.request(
            "PATCH",
            f"{MEETINGS_PATH}/{quote(crm_id, safe='')}",
            json={"properties": {"hs_meeting_outcome": "CANCELED"}},
            idempotent=True,
        )

    def find_booking(self, request: BookingRequest) -> SourceRecord | None:
        """The booking `request` made, after its answer was lost (see the module docstring)."""
        meeting = request.meeting
        if meeting.attendee.email is None:
            return None
        body = {
            "filterGroups": [
                {
                    "filters": [
                        {
                            "propertyName": "hs_meeting_start_time",
                            "operator": "EQ",
                            "value": str(epoch_ms(meeting.start)),
                        },
                        {"propertyName": "hs_unique_id", "operator": "HAS_PROPERTY"},
                    ]
                }
            ],
            "properties": list(PROPERTIES),
            "sorts": [],
            "limit": SEARCH_LIMIT,
            "after": "",
        }
        answer = response_json(
            PROVIDER, self._http.request("POST", f"{MEETINGS_PATH}/search", json=body, idempotent=True)
        )
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list):
            raise ProviderUnavailable(
                PROVIDER, f"POST {MEETINGS_PATH}/search answered without a 'results' list"
            )
        for item in results:
            try:
                record = normalise_crm_meeting(item)
            except NormaliseError:
                continue
            m = record.meeting
            if (
                record.reference
                and m.active
                and (m.start, m.end) == (meeting.start, meeting.end)
                and self._attendee_email(record.external_id) == meeting.attendee.email
            ):
                return self._titled(record, meeting)  # ours: titled as a booking answered is
        return None

    def _add_attendees(self, results: list[Any]) -> None:
        """Write each listed meeting's attendee (its first associated contact with an email) into
        it under ATTENDEE_KEY. A contact that cannot be read leaves the meeting without one."""
        for item in results:
            if not isinstance(item, dict):
                continue
            for contact_id in _contact_ids(item):
                email = self._contact_email(contact_id)
                if email:
                    item[ATTENDEE_KEY] = email
                    break

    def _contact_email(self, contact_id: str) -> str | None:
        if contact_id in self._contacts:
            return self._contacts[contact_id]
        try:
            found = response_json(
                PROVIDER,
                self._http.request(
                    "GET", f"{CONTACTS_PATH}/{quote(contact_id, safe='')}", params={"properties": "email"}
                ),
            )
        except ProviderNotFound:
            found = None  # merged or deleted since: no attendee from it
        props = found.get("properties") if isinstance(found, dict) else None
        email = as_text(props.get("email")) if isinstance(props, dict) else None
        email = email.lower() if email else None
        if len(self._contacts) >= CONTACT_CACHE_SIZE:
            self._contacts.pop(next(iter(self._contacts)))
        self._contacts[contact_id] = email
        return email

    def _attendee_email(self, crm_id: str) -> str | None:
        body = response_json(
            PROVIDER,
            self._http.request(
                "GET", f"{MEETINGS_PATH}/{quote(crm_id, safe='')}", params={"associations": "contacts"}
            ),
        )
        contacts = (
            ((body.get("associations") or {}).get("contacts") or {}).get("results")
            if isinstance(body, dict)
            else None
        )
        for contact in contacts if isinstance(contacts, list) else []:
            contact_id = _record_id(contact.get("id")) if isinstance(contact, dict) else None
            if contact_id is None:
                continue
            found = response_json(
                PROVIDER,
                self._http.request(
                    "GET", f"{CONTACTS_PATH}/{quote(contact_id, safe='')}", params={"properties": "email"}
                ),
            )
            props = found.get("properties") if isinstance(found, dict) else None
            email = as_text(props.get("email")) if isinstance(props, dict) else None
            if email:
                return email.lower()
        return None

    def close(self) -> None:
        self._http.close()
