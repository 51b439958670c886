"""Meetergo v4: appointments read by polling and by URL-token webhooks; bookings made and cancelled.

Follows meetergo's developer documentation only (https://developer.meetergo.com/): the API
overview, rate limiting, error handling, troubleshooting, bookings, rescheduling, paginated
appointments, webhooks overview, events and management pages, and the `POST /v4/booking`
reference (https://developer.meetergo.com/api-reference/bookings/create-booking).
Ambiguities, and the reading taken:

* Base URL. The docs give `https://api.meetergo.com/v4`; the connection names the host. A
  base_url that already ends in `/v4` is accepted and not doubled.
* Credentials. Both kinds go in `Authorization: Bearer`. A platform key (`ak_live:<uuid>:<secret>`,
  recognised by its `ak_` prefix) acts for a chosen user and needs `user_id`, sent as
  `x-meetergo-api-user-id` on every request ("most endpoints" need it; sending it everywhere is
  harmless). A personal token (`rgo-…`) "never uses this header": configuring `user_id` with one
  is a ConfigError rather than a header silently sent or silently dropped.
* Errors come as `{statusCode, message, error, errors[]}`; `message` may also be a list (a
  validation pipe's habit). All of it is folded into one line for `ProviderError.message`.
* Rate limits: 100 requests/min per key (burst 200). We pace at 100/min because the key may be
  shared. The documented 429 body has no Retry-After; the shared policy backs off, with the
  docs' own numbers (base 1 s doubling, at most 5 retries) and honours Retry-After if one comes.
* Reading. `GET /v4/appointment/paginated` has no `since`/`updatedAfter` filter, so every poll
  is a complete read from the first page. The page numbering is thin in the docs: we follow the
  n8n node (`page` from 0, `pageSize` <= 100). If page 0 is refused (400) we try page 1 once; if
  page 1 repeats page 0 exactly, the server is 1-based and treats 0 as 1, and we go on from 2.
  Either discovery is kept in the cursor (`first_page`). The read ends on an empty page, when the
  appointments received reach `total`, when a page brings nothing new (a server ignoring `page`),
  or after MAX_PAGES pages: it never loops forever. A short page is not taken as the end (the
  server may cap `pageSize`).
* Cursor, saved after every page: `{"page": next page to ask, "first_page": 0|1, "page_size": n}`.
  A finished read resets `page` to `first_page`. A crash resumes at the saved page; a cursor from
  another page_size, or one we cannot read, restarts from the first page.
* Churn. There is no watermark to keep: with no `since` filter, each poll is a full read whose
  cost is the number of appointments over the page size, whatever the rate of change, so
  requests per poll stay flat under churn by construction. A move during a read (the listing is
  ordered by start, so a reschedule moves an appointment) can make page-number paging skip one
  appointment in that read; the next read starts over from the first page and reads it, and the
  read that skipped it cannot sweep (its `total` or its id count is off, see below), so a skip
  delays an update by one interval and never deletes anything.
* Sweep (vanished appointments become deleted). Only after a read that started at the first
  page, received exactly `total` distinct ids with `total` present and unchanged on every page,
  no repeats and no item without an id. The window starts at the read's start (`context.now`):
  a past appointment the listing may no longer show is never called deleted. Scope is
  SWEEP_SCOPE, given only to records a poll listed; webhook and create() records carry no scope,
  so an appointment the listing never showed (another user's, a company-wide webhook) is never
  swept. Residual risk: the listing's order is undocumented, so page-number paging over a set
  that changes during the read can skip an item; a change shows as a different `total` and
  voids the sweep, but one creation and one deletion during the same read cancel out.
* Record shapes. The webhook payload is documented (`id`, `start`, `end`, `isCancelled`,
  `meetingInfo{channel, meetingLink}`, `attendees[]`, `hosts[]`, `meetingType{meetingInfo{name,
  duration}}`, `updatedAt`); the paginated appointment only partly (`id`, `meetingInfo{…}`,
  `hostingInfo{mainHost, meetingLink, …}`, `cancel{actionSource, actionAt, actionBy, reason}`).
  We read `start`/`end` at the top level, else in `meetingInfo`; a missing end is start plus the
  first duration found (top level, `meetingInfo`, `meetingType.meetingInfo`, minutes). Missing
  id/start/end is a NormaliseError naming each field missing.
* Titles: one rule for the webhook and the listing, so the same appointment read both ways has
  one title (two readings that disagree would make a false `meeting.updated` at every poll). The
  webhook documents only the meeting type's name (`meetingType.meetingInfo.name`); the listing's
  `meetingInfo` is undocumented and is seen carrying the appointment's calendar title
  (`meetingInfo.title`), which meetergo builds as `<meeting type name> - <attendee name>` unless
  the booking set its own (`icsTitle`). The title is the meeting type's name: read from
  `meetingType` where a record has it, else recovered from the record's own title by removing
  the ` - <attendee name>` suffix. A booking with a custom title keeps that title from the
  listing and the type's name from a webhook: the one case the two can still disagree.
* Times: "All API times are in UTC by default", so a time without an offset is read as UTC. A
  date without a time (an all-day value) is quarantined with that reason, never read as
  midnight UTC and 24 hours long.
* Shape of a booking (`shape`): whole minutes ("duration: Duration in minutes"; the slot grid is
  in minutes), never without a length, and, when `durations` is configured, only the meeting
  type's default and allowed durations ("must match either the default duration or one of the
  allowed durations configured for the meeting type"). The meeting type itself cannot be read
  (no documented endpoint), so `durations` is configuration. The start is sent floored to the
  minute and the duration is the minutes between the floored start and the floored end, so the
  booking read back equals the meeting at that resolution and the planner sees it in step. A
  meeting it cannot hold (a length not allowed, no length) is refused before any call, with
  the reason; never rounded to a length the meeting does not have.
* Status. Cancelled when `isCancelled` is true or `cancel` holds any of actionAt/actionSource/
  actionBy/reason; that wins over everything. A `status` (undocumented on appointments; the
  provisional-booking listing documents pending|confirmed|expired|declined_by_host) is read only
  when recognised: pending → `pending`, expired/declined_by_host/cancelled → `cancelled`. Otherwise
  `scheduled`. Meetergo documents no completed/no-show state.
* People. The attendee is the first of `attendees[]` (or `attendee`): a group booking keeps its
  first guest. An attendee email that is not an address is a NormaliseError. Hosts are the emails
  of `hosts[]` and `hostingInfo.mainHost`; a host entry without a usable email is skipped. The
  meeting's timezone is the attendee's (decorative: an invalid zone is dropped).
* Webhooks. No signature is documented, so the connection's webhook URL carries a secret:
  register `https://<bookingsync>/webhooks/<connection_id>?token=<webhook_secret>` with
  `POST /webhooks`. The token is read from the URL's query only, must appear exactly once and is
  compared in constant time; no webhook_secret configured refuses every delivery. Use a URL-safe
  secret (`secrets.token_urlsafe(32)`): it is percent-decoded before comparing, and it lives in
  URLs that proxies may log. The token is checked before the body is looked at.
* Payload shape: the current page puts `webhookType` and the data at the top level; an older
  revision sends `{event, data}`. Both are accepted (`webhookType` wins when both appear).
  booking_created and booking_rescheduled carry the appointment as it now is; booking_cancelled
  forces `cancelled` (it also fires when one attendee leaves a group booking: our meeting has one
  attendee, so we read it as cancelled). Other types (new_employee, form_submission, anything
  new) are acknowledged and not handled. A rescheduled appointment that meetergo gave a new id
  arrives as that id; the old id is closed by its own cancellation or by the next sweep.
* Delivery id: none is documented, and "webhooks may be delivered more than once". We use
  `sha256:` + the SHA-256 of the body's canonical JSON (sorted keys, no whitespace), so a
  redelivery dedupes even if re-serialised; two deliveries differing in any field do not.
* Booking (`POST /v4/booking`). We send meetingTypeId, start (UTC, `Z`, floored to the minute),
  duration in minutes (see Shape; without `durations` configured, a duration the meeting type
  does not allow is meetergo's 400), hostIds or queueId (one, from config), icsTitle from the meeting's title, and
  attendee {email, fullname (the name, else the email's local part), phone, timezone,
  receiveReminders false (the source already reminds), notes {bookingsyncReference: reference}}
  — `notes` is a required free-form object and the only documented place to keep our reference.
  A booking that replaces another (a move) sends `rescheduledFromId` = the old id, the docs'
  rescheduling pattern; the old one is then cancelled by a write of its own (the worker's), so a
  cancel that fails stays visible instead of being hidden inside one call.
* Our reference read back: `notes.bookingsyncReference` of the first attendee, wherever an
  appointment carries its attendees (`meetingInfo.attendees`, `attendees`); the documented
  webhook payload does not carry `notes`, so a webhook echo is recognised by id or by slot.
* Finding a booking whose answer was lost (FIND_BOOKING): a complete read of the appointment
  listing (no filter is documented) for the appointment whose attendee carries our reference;
  a listing that shows no notes falls back to the one live appointment of that attendee at
  exactly that start and end. A provisional (double opt-in) booking is not in that listing, so
  it is not found: mirror into a meeting type without double opt-in.
* Answers. Standard `{appointmentId, secret}`: we read `GET /v4/appointment/{id}` and normalise
  it; if that read fails or cannot be normalised, the answer is built from the request (the
  booking exists and must be linked, or a retry would book twice). `bookingType` doubleOptIn /
  requireHostConfirmation (any case; an unknown bookingType is treated the same, as not booked):
  a `pending` record under `provisional:<provisionalBookingId>` (or the appointmentId when no
  provisional id is given). Meetergo documents no link from a provisional booking to the
  appointment created on confirmation, which arrives with its own id: matching the two (meeting
  type, start, attendee email) is the reconciler's; for mirroring, choose a meeting type without
  double opt-in. 400/409 naming an unavailable slot is SlotUnavailable: the request is for
  exactly one time, so there is no fresh slot to retry with.
* Cancel: the developer docs' `DELETE /v4/appointment/{id}`; when that route answers 404 or 405,
  meetergo's MCP server's `POST /v4/appointment/{id}/cancel`. A 404 from both is ProviderNotFound
  (the caller may take it as already gone). A provisional booking has no documented cancel: it is
  a ProviderRejected saying so (it expires unless confirmed).
* No RESCHEDULE capability: the docs' pattern is a new booking with `rescheduledFromId` then a
  cancel of the old one, which the worker does as two writes (create with `replaces`, cancel),
  not the MCP server's undocumented-body `…/reschedule`.
* Answers lost: a POST /v4/booking that timed out, got a 5xx or lost its connection raises
  AnswerLost (ProviderHttp), and so does a 2xx answer that is not an object or names no
  appointment: the booking was probably made, find it by our reference.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import parse_qs, quote, urlsplit

import httpx
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator

from bookingsync.adapters import skew
from bookingsync.adapters.base import (
    BookingRequest,
    BookingShape,
    Capability,
    Page,
    RawRecord,
    ReadContext,
    Sweep,
    WebhookDelivery,
)
from bookingsync.adapters.fields import as_email, as_table, as_text, as_zone, unusable
from bookingsync.adapters.http import ProviderHttp, response_json
from bookingsync.adapters.settings import AdapterSettings, blank, keyed
from bookingsync.adapters.time_formats import iso_seconds_z
from bookingsync.adapters.wall_time import DATE_ONLY, date_only
from bookingsync.models.errors import (
    AnswerLost,
    ConfigError,
    NormaliseError,
    ProviderError,
    ProviderNotFound,
    ProviderRejected,
    ProviderUnavailable,
    SlotUnavailable,
    WebhookMalformed,
    WebhookUnauthorized,
)
from bookingsync.models.meeting import Meeting, MeetingStatus, Person, SourceRecord

log = logging.getLogger(__name__)

PROVIDER = "meetergo"
LIST_PATH = "/v4/appointment/paginated"
BOOKING_PATH = "/v4/booking"
USER_HEADER = "x-meetergo-api-user-id"
PLATFORM_KEY_PREFIX = "ak_"
MAX_PAGE_SIZE = 100  # the n8n node's documented maximum of pageSize
# 1000 pages of 100 is far beyond one user's appointments; past it the server is not paging.
MAX_PAGES = 1000
DEFAULT_REQUESTS_PER_MINUTE = 100.0  # documented standard rate per API key
# The rate-limiting page: "2^attempt s + jitter, max 5" retries.
BACKOFF_BASE = 1.0
MAX_RETRIES = 5
SWEEP_SCOPE = "appointments"
PROVISIONAL_PREFIX = "provisional:"
PROVISIONAL_TYPES = frozenset({"doubleoptin", "requirehostconfirmation"})
TOKEN_PARAM = "token"
REFERENCE_NOTE = "bookingsyncReference"  # our key in the attendee's free-form `notes`

# Event type -> whether it forces the appointment cancelled.
HANDLED_EVENTS: dict[str, bool] = {
    "booking_created": False,
    "booking_rescheduled": False,
    "booking_cancelled": True,
}
# Recognised values of an undocumented `status`; any other value is ignored.
STATUSES = {
    "pending": MeetingStatus.PENDING,
    "cancelled": MeetingStatus.CANCELLED,
    "canceled": MeetingStatus.CANCELLED,
    "expired": MeetingStatus.CANCELLED,
    "declined_by_host": MeetingStatus.CANCELLED,
}
CANCEL_FIELDS = ("actionAt", "actionSource", "actionBy", "reason")


# -- paging: pure, no HTTP ----------------------------------------------------------------------


@dataclass
class AppointmentRead:
    """One complete read of `GET /v4/appointment/paginated`: which page next, when to stop, and
    whether what was read is complete enough to sweep. See the module docstring for the cursor."""

    page_size: int
    first_page: int = 0
    page: int = 0
    start_page: int = 0
    total: int | None = None
    total_missing: bool = False
    seen: set[str] = field(default_factory=set)
    previous: list[str | None] = field(default_factory=list)
    received: int = 0
    anonymous: bool = False
    disturbed: bool = False
    pages: int = 0

    @classmethod
    def start(cls, cursor: Mapping[str, Any] | None, page_size: int) -> AppointmentRead:
        if not cursor:
            return cls(page_size=page_size)
        try:
            first = cursor.get("first_page", 0)
            page = cursor.get("page", first)
            if first not in (0, 1) or isinstance(page, bool) or not isinstance(page, int) or page < first:
                raise ValueError(cursor)
        except (AttributeError, ValueError):
            log.warning("meetergo: unusable cursor %r; reading from the first page", cursor)
            return cls(page_size=page_size)
        if cursor.get("page_size") != page_size:
            page = first  # page numbers of another page size point elsewhere
        return cls(page_size=page_size, first_page=first, page=page, start_page=page)

    @property
    def resumed(self) -> bool:
        return self.start_page > self.first_page

    def params(self) -> dict[str, int]:
        return {"page": self.page, "pageSize": self.page_size}

    def one_based(self) -> None:
        """Page 0 was refused: number pages from 1 from now on."""
        self.first_page = self.page = self.start_page = 1

    def take(self, ids: list[str | None], total: int | None) -> bool:
        """Account for one received page (its items' ids); True when the read is over."""
        self.pages += 1
        if total is None:
            self.total_missing = True
        elif self.total is not None and total != self.total:
            self.disturbed = True
        if total is not None:
            self.total = total
        if (
            ids
            and ids == self.previous
            and self.page == 1
            and self.first_page == 0
            and self.start_page == 0
            and None not in ids
        ):
            # Page 1 repeated page 0: a 1-based server reading 0 as 1. Go on from page 2.
            self.first_page, self.start_page, self.page = 1, 1, 2
            return False
        self.previous = list(ids)
        if not ids:
            if self.total is not None and self._position() < self.total:
                self.disturbed = True  # ended short of what the server said it had
            return True
        self.received += len(ids)
        new = 0
        for item in ids:
            if item is None:
                self.anonymous = True
            elif item in self.seen:
                self.disturbed = True
            else:
                new += 1
                self.seen.add(item)
        self.page += 1
        if new == 0 and not self.anonymous:
            self.disturbed = True  # the server repeats itself: it ignores `page` or the set moved
            return True
        if self.total is not None and self._position() >= self.total:
            return True
        if self.pages >= MAX_PAGES:
            log.warning(
                "meetergo: stopping a read after %d pages; the server does not seem to page", self.pages
            )
            self.disturbed = True
            return True
        return False

    def _position(self) -> int:
        # Items before this run's first page count at page_size each (a resumed read only).
        return (self.start_page - self.first_page) * self.page_size + self.received

    def cursor(self, done: bool) -> dict[str, Any]:
        return {
            "page": self.first_page if done else self.page,
            "first_page": self.first_page,
            "page_size": self.page_size,
        }

    def complete(self) -> bool:
        """Whether this finished read saw exactly the whole listing (so it may sweep)."""
        return (
            not self.resumed
            and not self.disturbed
            and not self.anonymous
            and not self.total_missing
            and self.total is not None
            and len(self.seen) == self.total
        )


def listing(body: Any) -> tuple[list[Any], int | None]:
    """The appointments and `total` of one paginated answer."""
    if isinstance(body, list):
        return body, None
    if isinstance(body, dict):
        items = body.get("appointments")
        if isinstance(items, list):
            total = body.get("total")
            valid = isinstance(total, int) and not isinstance(total, bool) and total >= 0
            return items, total if valid else None
    raise ProviderUnavailable(PROVIDER, f"GET {LIST_PATH} answered without an 'appointments' list")


def record_id(payload: Any) -> str | None:
    if not isinstance(payload, dict):
        return None
    for key in ("id", "appointmentId"):
        value = payload.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return None


# -- normalise: pure ----------------------------------------------------------------------------


def parse_time(value: Any, what: str) -> datetime:
    if not isinstance(value, str) or not value.strip():
        raise NormaliseError(f"the meetergo appointment's {what} {value!r} is not an ISO 8601 time")
    if date_only(value):
        raise NormaliseError(f"the meetergo appointment's {what} {value!r} {DATE_ONLY}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise NormaliseError(f"the meetergo appointment's {what} {value!r} is not an ISO 8601 time") from exc
    # "All API times are in UTC by default."
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _first(payload: Mapping[str, Any], name: str) -> Any:
    value = payload.get(name)
    return value if value not in (None, "") else as_table(payload.get("meetingInfo")).get(name)


def _duration(payload: Mapping[str, Any]) -> float | None:
    for where in (
        payload,
        as_table(payload.get("meetingInfo")),
        as_table(as_table(payload.get("meetingType")).get("meetingInfo")),
    ):
        value = where.get("duration")
        if (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
            and value > 0
        ):
            return float(value)
    return None


def _status(payload: Mapping[str, Any]) -> MeetingStatus:
    flag = payload.get("isCancelled")
    if flag is True or (isinstance(flag, str) and flag.strip().lower() == "true"):
        return MeetingStatus.CANCELLED
    cancel = payload.get("cancel")
    if isinstance(cancel, dict) and any(cancel.get(key) not in (None, "", False) for key in CANCEL_FIELDS):
        return MeetingStatus.CANCELLED
    raw = payload.get("status")
    status = STATUSES.get(raw.strip().lower()) if isinstance(raw, str) else None
    return status or MeetingStatus.SCHEDULED


def _first_attendee(payload: Mapping[str, Any]) -> Any:
    # Webhook payloads carry attendees at the top level; appointment reads may nest them in
    # meetingInfo (as they do start and end): look in both.
    attendees = payload.get("attendees")
    if not isinstance(attendees, list) or not attendees:
        attendees = as_table(payload.get("meetingInfo")).get("attendees")
    first = next((a for a in attendees if isinstance(a, dict)), None) if isinstance(attendees, list) else None
    return first if first is not None else payload.get("attendee")


def planted_reference(payload: Mapping[str, Any]) -> str | None:
    """The reference bookingsync planted in the first attendee's notes when it made the booking."""
    return as_text(as_table(as_table(_first_attendee(payload)).get("notes")).get(REFERENCE_NOTE))


def _attendee(payload: Mapping[str, Any]) -> tuple[Person, str | None]:
    person = _first_attendee(payload)
    if not isinstance(person, dict):
        return Person(), None
    raw_email = person.get("email")
    email = as_email(raw_email)
    if raw_email not in (None, "") and email is None:
        raise NormaliseError(
            f"the meetergo appointment's attendee email {raw_email!r} is not an email address"
        )
    name = (
        as_text(person.get("fullname"))
        or " ".join(
            part for part in (as_text(person.get("firstname")), as_text(person.get("lastname"))) if part
        )
        or None
    )
    return Person(email=email, name=name, phone=as_text(person.get("phone"))), as_text(person.get("timezone"))


def _hosts(payload: Mapping[str, Any]) -> tuple[str, ...]:
    candidates: list[Any] = []
    hosts = payload.get("hosts")
    if isinstance(hosts, list):
        candidates += [as_table(h).get("email") for h in hosts]
    main = as_table(payload.get("hostingInfo")).get("mainHost")
    candidates.append(as_table(main).get("email") if isinstance(main, dict) else main)
    return tuple(email for email in (as_email(c) for c in candidates) if email)


def _conference_url(payload: Mapping[str, Any]) -> str | None:
    for where in (as_table(payload.get("meetingInfo")), as_table(payload.get("hostingInfo")), payload):
        link = as_text(where.get("meetingLink"))
        if link and link.startswith(("https://", "http://")):
            return link
    return None


def _title(payload: Mapping[str, Any], attendee: str | None) -> str | None:
    """One rule for every shape (see the module docstring, "Titles"): the meeting type's name."""
    meeting_type = as_table(payload.get("meetingType"))
    named = as_text(as_table(meeting_type.get("meetingInfo")).get("name")) or as_text(
        meeting_type.get("name")
    )
    if named:
        return named
    own = (
        as_text(payload.get("title"))
        or as_text(as_table(payload.get("meetingInfo")).get("title"))
        or as_text(as_table(payload.get("meetingInfo")).get("name"))
    )
    suffix = f" - {attendee}" if attendee else None
    if own and suffix and own.endswith(suffix) and len(own) > len(suffix):
        return own[: -len(suffix)].strip() or own
    return own


def normalise_appointment(payload: Any, scope: str | None = None) -> SourceRecord:
    """A meetergo appointment (listing item, single read or webhook payload) as a `SourceRecord`."""
    if not isinstance(payload, dict):
        raise NormaliseError(f"a meetergo appointment must be a JSON object, not {type(payload).__name__}")
    appointment_id = record_id(payload)
    raw_start, raw_end, duration = _first(payload, "start"), _first(payload, "end"), _duration(payload)
    missing = [
        name
        for name, absent in (
            ("id", appointment_id is None),
            ("start", raw_start in (None, "")),
            ("end (or a duration)", raw_end in (None, "") and duration is None),
        )
        if absent
    ]
    if missing:
        which = f" {appointment_id}" if appointment_id else ""
        raise NormaliseError(f"the meetergo appointment{which} has no {', '.join(missing)}")
    assert appointment_id is not None
    start = parse_time(raw_start, "start")
    if raw_end in (None, ""):
        assert duration is not None
        end = start + timedelta(minutes=duration)
    else:
        end = parse_time(raw_end, "end")
    updated_raw = payload.get("updatedAt")
    try:
        updated = parse_time(updated_raw, "updatedAt") if updated_raw not in (None, "") else None
    except NormaliseError:
        updated = None  # only a hint for the store; the meeting is still good
    attendee, zone = _attendee(payload)
    try:
        meeting = Meeting(
            status=_status(payload),
            title=_title(payload, attendee.name),
            start=start,
            end=end,
            timezone=as_zone(zone or payload.get("timezone"), PROVIDER),
            attendee=attendee,
            hosts=_hosts(payload),
            conference_url=_conference_url(payload),
        )
        predecessor = as_text(payload.get("rescheduledFromId")) or as_text(
            as_table(payload.get("meetingInfo")).get("rescheduledFromId")
        )
        return SourceRecord(
            external_id=appointment_id,
            meeting=meeting,
            source_updated_at=updated,
            scope=scope,
            supersedes=predecessor if predecessor != appointment_id else None,
            reference=planted_reference(payload),
        )
    except ValidationError as exc:
        raise unusable(f"the meetergo appointment {appointment_id}", exc) from exc


# -- webhooks: pure -----------------------------------------------------------------------------


def verify_token(url: str, secret: str | None) -> None:
    """Raise WebhookUnauthorized unless the URL's `token` query parameter is `secret`."""
    if not secret:
        raise WebhookUnauthorized(
            "no webhook_secret is configured for this meetergo connection, so no delivery can be trusted"
        )
    values = parse_qs(urlsplit(url).query, keep_blank_values=True).get(TOKEN_PARAM, [])
    if len(values) != 1 or not values[0]:
        raise WebhookUnauthorized(
            "the webhook URL carries no single ?token=; register the URL with the connection's token"
        )
    if not hmac.compare_digest(values[0].encode(), secret.encode()):
        raise WebhookUnauthorized("the webhook URL's token does not match this connection's webhook_secret")


def delivery_id(envelope: Any) -> str:
    """Stable over redeliveries: SHA-256 of the body's canonical JSON."""
    canonical = json.dumps(envelope, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def parse_delivery(body: bytes) -> WebhookDelivery:
    """The records of a verified delivery; WebhookMalformed when it is not a meetergo payload."""
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookMalformed(f"the meetergo delivery body is not JSON: {exc}") from exc
    if not isinstance(envelope, dict):
        raise WebhookMalformed("the meetergo delivery body is not a JSON object")
    kind = envelope.get("webhookType")
    if kind is not None:
        data: Any = envelope
    else:
        kind, data = envelope.get("event"), envelope.get("data")
    if not isinstance(kind, str) or not kind.strip():
        raise WebhookMalformed("the meetergo delivery has neither 'webhookType' nor 'event'")
    event_type = kind.strip().lower()
    ident = delivery_id(envelope)
    if event_type not in HANDLED_EVENTS:
        return WebhookDelivery(delivery_id=ident, event_type=event_type, records=[], handled=False)
    if not isinstance(data, dict):
        raise WebhookMalformed(f"the meetergo {event_type} delivery's 'data' is not a JSON object")
    # A copy, so the receipt keeps what meetergo sent while ingest sees what the event means.
    payload = {k: v for k, v in data.items() if k != "webhookType"}
    if HANDLED_EVENTS[event_type]:
        payload["isCancelled"] = True
    return WebhookDelivery(
        delivery_id=ident,
        event_type=event_type,
        records=[RawRecord(payload=payload, external_id=record_id(payload))],
    )


# -- booking: pure ------------------------------------------------------------------------------


# Bookings are made in whole minutes ("duration: Duration in minutes"), on a minute grid, and
# never without a length; `durations` (the meeting type's default and allowed ones) narrows it.
SHAPE = BookingShape(resolution=timedelta(minutes=1), zero_length=False)


def booking_body(
    request: BookingRequest,
    *,
    meeting_type_id: str,
    host_ids: Sequence[str],
    queue_id: str | None,
    rescheduled_from: str | None = None,
    shape: BookingShape = SHAPE,
) -> dict[str, Any]:
    """The `POST /v4/booking` body: the meeting's times as meetergo keeps them (whole minutes), or
    ProviderRejected when it cannot hold them (a length the meeting type does not allow, none)."""
    meeting = request.meeting
    why = shape.cannot_hold(meeting.start, meeting.end)
    if why is not None:
        raise ProviderRejected(PROVIDER, f"meeting type {meeting_type_id} cannot hold this meeting: {why}")
    start, end = shape.held(meeting.start, meeting.end)
    email = meeting.attendee.email
    if not email:
        raise ProviderRejected(PROVIDER, "the meeting has no attendee email, which meetergo requires to book")
    attendee: dict[str, Any] = {
        "email": email,
        "fullname": meeting.attendee.name or email.split("@", 1)[0],
        "receiveReminders": False,
        "notes": {REFERENCE_NOTE: request.reference},
    }
    if meeting.attendee.phone:
        attendee["phone"] = meeting.attendee.phone
    if meeting.timezone:
        attendee["timezone"] = meeting.timezone
    body: dict[str, Any] = {
        "meetingTypeId": meeting_type_id,
        "start": iso_seconds_z(start),
        "duration": round((end - start) / timedelta(minutes=1)),
        "attendee": attendee,
    }
    if queue_id:
        body["queueId"] = queue_id
    else:
        body["hostIds"] = list(host_ids)
    if meeting.title:
        body["icsTitle"] = meeting.title[:200]
    if rescheduled_from:
        body["rescheduledFromId"] = rescheduled_from
    return body


def provisional_record(answer: Mapping[str, Any], request: BookingRequest) -> SourceRecord | None:
    """A `pending` record for a double-opt-in / host-confirmation answer; None for a standard one."""
    kind = answer.get("bookingType")
    provisional_id = as_text(answer.get("provisionalBookingId"))
    appointment_id = record_id({"id": answer.get("appointmentId")})
    if kind in (None, "") and (appointment_id is not None or provisional_id is None):
        return None  # a standard booking (or an answer naming nothing, which the caller refuses)
    if isinstance(kind, str) and kind.strip().lower() not in PROVISIONAL_TYPES:
        log.warning("meetergo: unknown bookingType %r; treating the booking as provisional", kind)
    external_id = f"{PROVISIONAL_PREFIX}{provisional_id}" if provisional_id else appointment_id
    if external_id is None:
        raise ProviderUnavailable(
            PROVIDER,
            f"a provisional booking answer ({kind!r}) named no id; find it by "
            f"notes.bookingsyncReference={request.reference}",
        )
    meeting = request.meeting.model_copy(update={"status": MeetingStatus.PENDING})
    return SourceRecord(external_id=external_id, meeting=meeting)


def is_slot_taken(exc: ProviderRejected) -> bool:
    text = exc.message.lower()
    return exc.status == 409 or (exc.status == 400 and "slot" in text and "available" in text)


# -- the adapter: the HTTP edge -----------------------------------------------------------------


def error_message(response: httpx.Response) -> str:
    """`{statusCode, message, error, errors[{field, message}]}` as one line."""
    body = response.json()
    if not isinstance(body, dict):
        return ""
    message = body.get("message")
    if isinstance(message, list):
        message = "; ".join(str(m) for m in message)
    text = str(message or body.get("error") or "")
    details = [
        f"{e.get('field')}: {e.get('message')}" if e.get("field") else str(e.get("message"))
        for e in body.get("errors") or []
        if isinstance(e, dict) and e.get("message")
    ]
    return f"{text} ({'; '.join(details)})" if details else text


class MeetergoSettings(AdapterSettings):
    """What a meetergo connection takes (README: Connection settings by provider)."""

    label: ClassVar[str] = "meetergo"

    base_url: str = Field(
        description="meetergo's API address, e.g. `https://api.meetergo.com` (a trailing `/v4` is dropped)"
    )
    token: SecretStr = Field(
        description="a personal access token, or a platform API key (`ak_…`, then with `user_id`)"
    )
    user_id: str | None = Field(
        default=None,
        description="the meetergo user a platform API key acts for (never with a personal token)",
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="the secret the webhook URL carries (`?token=`); without it every delivery is refused",
    )
    meeting_type_id: str | None = Field(
        default=None,
        description="the meeting type mirrored bookings are made in (needed to be a route target)",
    )
    host_ids: tuple[str, ...] = Field(
        default=(), description="the hosts a booking is made with (or `queue_id`, not both)"
    )
    queue_id: str | None = Field(
        default=None, description="the queue that picks a booking's host (or `host_ids`)"
    )
    page_size: int = Field(default=MAX_PAGE_SIZE, description="appointments per page (1 to 100)")
    durations: tuple[int, ...] | None = Field(
        default=None,
        description="the meeting type's default and allowed lengths in whole minutes, e.g. `[30, 60]` (unset: any)",
    )
    requests_per_minute: float = Field(
        default=DEFAULT_REQUESTS_PER_MINUTE,
        gt=0,
        description="our pace (meetergo's standard rate is 100 per key)",
    )
    timeout: float = Field(default=15.0, gt=0, description="seconds one request may take")

    @field_validator("user_id", "queue_id", "meeting_type_id")
    @classmethod
    def _optional_text(cls, value: str | None) -> str | None:
        return (value or "").strip() or None

    @field_validator("host_ids", mode="before")
    @classmethod
    def _hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError("host_ids must be a list of meetergo user ids, not one string")
        return tuple(h.strip() for h in value if isinstance(h, str) and h.strip()) if value else ()

    @field_validator("page_size", mode="before")
    @classmethod
    def _page_size(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size {value} must be between 1 and {MAX_PAGE_SIZE}")
        return value

    @field_validator("durations", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> Any:
        if value is not None and (
            isinstance(value, (str, bytes))
            or not value
            or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in value)
        ):
            raise ValueError(
                "durations must list the meeting type's default and allowed durations in "
                f"whole minutes (e.g. [30, 60]), not {value!r}"
            )
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if blank(value):
            raise ValueError("webhook_secret is blank; remove it or set the token the webhook URL carries")
        return value

    @model_validator(mode="after")
    def _together(self) -> MeetergoSettings:
        platform = self.token.get_secret_value().startswith(PLATFORM_KEY_PREFIX)
        if platform and self.user_id is None:
            raise ValueError(
                keyed(
                    "user_id",
                    "a meetergo platform API key (ak_…) acts for a chosen user; set user_id "
                    "to the meetergo user it acts as",
                )
            )
        if not platform and self.user_id is not None:
            raise ValueError(
                keyed(
                    "user_id",
                    "a meetergo personal access token never names a user; remove user_id, "
                    "or use a platform API key (ak_live:…)",
                )
            )
        if self.host_ids and self.queue_id:
            raise ValueError(
                keyed(
                    "queue_id",
                    "set host_ids or queue_id, not both (meetergo refuses a queue with chosen hosts)",
                )
            )
        if self.meeting_type_id and not (self.host_ids or self.queue_id):
            raise ValueError(
                keyed("host_ids", "booking with meeting_type_id needs host_ids or queue_id; add one")
            )
        if (self.host_ids or self.queue_id) and not self.meeting_type_id:
            raise ValueError(
                keyed("meeting_type_id", "host_ids and queue_id are for booking; add meeting_type_id too")
            )
        return self

    def booking_problem(self) -> str | None:
        if not self.meeting_type_id:
            return (
                "set options.meeting_type_id (and host_ids or queue_id) to the meetergo meeting type that "
                "mirrored bookings are made in"
            )
        return None


class MeetergoAdapter:
    provider: ClassVar[str] = PROVIDER
    settings_model: ClassVar[type[AdapterSettings]] = MeetergoSettings
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.LIST_CHANGES,
            Capability.RECEIVE_WEBHOOKS,
            Capability.CREATE,
            Capability.CANCEL,
            Capability.FIND_BOOKING,
        }
    )

    def __init__(
        self,
        *,
        connection_id: str,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        **values: Any,
    ) -> None:
        settings = MeetergoSettings.checked(connection_id, values)
        self.connection_id = connection_id
        self._secret = settings.webhook_secret.get_secret_value().strip() if settings.webhook_secret else None
        self._meeting_type_id = settings.meeting_type_id
        self._host_ids = settings.host_ids
        self._queue_id = settings.queue_id
        self._page_size = settings.page_size
        # What a booking here can hold: whole minutes, a length, and the configured durations.
        durations = settings.durations
        self.shape = (
            SHAPE
            if durations is None
            else replace(SHAPE, durations=frozenset(timedelta(minutes=d) for d in durations))
        )
        headers = {
            "Authorization": f"Bearer {settings.token.get_secret_value()}",
            "Accept": "application/json",
        }
        if settings.user_id is not None:
            headers[USER_HEADER] = settings.user_id
        self._http = ProviderHttp(
            provider=PROVIDER,
            base_url=settings.base_url.rstrip("/").removesuffix("/v4"),
            headers=headers,
            error_message=error_message,
            timeout=settings.timeout,
            transport=transport,
            sleep=sleep,
            observe_date=skew.for_connection(connection_id).observe_date,  # clock skew: a metric, a warning
            min_interval=60.0 / settings.requests_per_minute,
            backoff_base=BACKOFF_BASE,
            max_retries=MAX_RETRIES,
        )

    # -- read -------------------------------------------------------------------------------------

    def read(self, cursor: dict[str, Any] | None, context: ReadContext) -> Iterator[Page]:
        state = AppointmentRead.start(cursor, self._page_size)
        while True:
            items, total = listing(response_json(PROVIDER, self._list_page(state)))
            ids = [record_id(item) for item in items]
            done = state.take(ids, total)
            records = [
                RawRecord(payload=item, external_id=rid, scope=SWEEP_SCOPE)
                for item, rid in zip(items, ids, strict=True)
            ]
            sweep = None
            if done and state.complete():
                sweep = Sweep(scope=SWEEP_SCOPE, window_start=context.now, seen=frozenset(state.seen))
            elif done:
                log.info("meetergo %s: the read was not complete; no sweep this time", self.connection_id)
            yield Page(records=records, cursor=state.cursor(done), sweep=sweep)
            if done:
                return

    def _list_page(self, state: AppointmentRead) -> httpx.Response:
        try:
            return self._http.request("GET", LIST_PATH, params=state.params())
        except ProviderRejected as exc:
            if exc.status != 400 or state.page != 0 or state.first_page != 0:
                raise
            log.warning(
                "meetergo %s: page 0 refused (%s); numbering pages from 1", self.connection_id, exc.message
            )
            state.one_based()
            return self._http.request("GET", LIST_PATH, params=state.params())

    def get_meeting(self, appointment_id: str) -> RawRecord:
        """`GET /v4/appointment/{id}`; ProviderNotFound when meetergo has no such appointment."""
        response = self._http.request("GET", f"/v4/appointment/{quote(appointment_id, safe='')}")
        body = response_json(PROVIDER, response)
        if isinstance(body, dict) and isinstance(body.get("appointment"), dict):
            body = body["appointment"]
        if not isinstance(body, dict):
            raise ProviderUnavailable(
                PROVIDER, f"GET /v4/appointment/{appointment_id} answered without an appointment object"
            )
        return RawRecord(payload=body, external_id=record_id(body) or appointment_id)

    def normalise(self, record: RawRecord) -> SourceRecord:
        return normalise_appointment(record.payload, record.scope)

    # -- webhooks ---------------------------------------------------------------------------------

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, now: datetime, *, method: str = "POST", url: str = ""
    ) -> WebhookDelivery:
        verify_token(url, self._secret)
        if method.upper() != "POST":
            raise WebhookMalformed(f"meetergo delivers webhooks with POST, not {method}")
        return parse_delivery(body)

    # -- write ------------------------------------------------------------------------------------

    def create(self, request: BookingRequest) -> SourceRecord:
        return self._book(request, rescheduled_from=request.replaces)

    def find_booking(self, request: BookingRequest) -> SourceRecord | None:
        """The appointment `request` made, found by our reference (else by attendee and exact slot)."""
        state = AppointmentRead.start(None, self._page_size)
        by_slot: list[SourceRecord] = []
        while True:
            items, total = listing(response_json(PROVIDER, self._list_page(state)))
            done = state.take([record_id(item) for item in items], total)
            for item in items:
                try:
                    record = normalise_appointment(item)
                except NormaliseError:
                    continue
                if record.reference == request.reference:
                    return record
                m, wanted = record.meeting, request.meeting
                if (
                    record.reference is None
                    and m.active
                    and self.shape.held(m.start, m.end) == self.shape.held(wanted.start, wanted.end)
                    and m.attendee.email == wanted.attendee.email
                ):
                    by_slot.append(record)
            if done:
                break
        if len(by_slot) == 1:
            return by_slot[0]
        if by_slot:
            raise ProviderUnavailable(
                PROVIDER,
                f"{len(by_slot)} appointments of {request.meeting.attendee.email} at "
                f"{iso_seconds_z(request.meeting.start)} carry no reference; cannot tell "
                "which one is ours",
            )
        return None

    def cancel(self, external_id: str) -> None:
        if external_id.startswith(PROVISIONAL_PREFIX):
            raise ProviderRejected(
                PROVIDER,
                f"{external_id} is a provisional booking; meetergo documents no way "
                "to cancel one (it expires unless the attendee or host confirms)",
            )
        path = f"/v4/appointment/{quote(external_id, safe='')}"
        try:
            self._http.request("DELETE", path)
            return
        except ProviderRejected as exc:
            if exc.status != 405:
                raise
        except ProviderNotFound:
            pass  # no such appointment, or no such route: the MCP server's form tells which
        self._http.request("POST", f"{path}/cancel", json={}, idempotent=True)

    def _book(self, request: BookingRequest, *, rescheduled_from: str | None) -> SourceRecord:
        if self._meeting_type_id is None:
            raise ConfigError(
                f"connection {self.connection_id!r} cannot book: set meeting_type_id and host_ids or queue_id"
            )
        body = booking_body(
            request,
            meeting_type_id=self._meeting_type_id,
            host_ids=self._host_ids,
            queue_id=self._queue_id,
            rescheduled_from=rescheduled_from,
            shape=self.shape,
        )
        try:
            response = self._http.request("POST", BOOKING_PATH, json=body)
        except ProviderRejected as exc:
            if is_slot_taken(exc):
                raise SlotUnavailable(PROVIDER, exc.message, status=exc.status) from exc
            raise
        try:
            answer = response_json(PROVIDER, response)
        except ProviderUnavailable as exc:
            raise AnswerLost(
                PROVIDER,
                f"POST {BOOKING_PATH} {exc.message}; find the booking by "
                f"notes.bookingsyncReference={request.reference}",
            ) from exc
        if not isinstance(answer, dict):
            raise AnswerLost(
                PROVIDER,
                f"POST {BOOKING_PATH} answered without an object; find the booking "
                f"by notes.bookingsyncReference={request.reference}",
            )
        pending = provisional_record(answer, request)
        if pending is not None:
            log.warning(
                "meetergo %s: booking %s is provisional (%s) until confirmed",
                self.connection_id,
                pending.external_id,
                answer.get("bookingType"),
            )
            return pending
        appointment_id = record_id({"id": answer.get("appointmentId")})
        if appointment_id is None:
            raise AnswerLost(
                PROVIDER,
                f"POST {BOOKING_PATH} answered without an appointmentId; find the "
                f"booking by notes.bookingsyncReference={request.reference}",
            )
        try:
            return self.normalise(self.get_meeting(appointment_id))
        except (ProviderError, NormaliseError) as exc:
            log.warning(
                "meetergo %s: booked %s but could not read it back (%s); linking what we asked for",
                self.connection_id,
                appointment_id,
                exc,
            )
            start, end = self.shape.held(request.meeting.start, request.meeting.end)
            meeting = request.meeting.model_copy(
                update={"status": MeetingStatus.SCHEDULED, "start": start, "end": end}
            )
            return SourceRecord(external_id=appointment_id, meeting=meeting, reference=request.reference)

    def close(self) -> None:
        self._http.close()
