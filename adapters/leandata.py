"""LeanData BookIt: meetings read per watched prospect email (no change feed, no webhooks).

Follows LeanData's published documents: the BookIt API OpenAPI file and Postman collection
(`GET /v1/meetings`, `GET /v1/meeting/:meetingId`; https://bookit-api.leandata.com/) and LeanData's
guides on managing a meeting, authentication, problem types and rate limits
(https://docs.leandata.com). Ambiguities, and the reading taken:

* Record shape. The OpenAPI response table describes `{bookIt: {status}, calendarEvent: {id,
  title, status, scheduledTime: {start_time, end_time}, organizer: {email}, attendees[]}}`; the
  manage-a-meeting note describes a flat `{id, title, status, scheduledTime, organizer_email,
  attendees[]}`. Both are accepted. The id is the first present of: top-level `id`, `bookIt.id`,
  `bookIt.meetingId`, `calendarEvent.id` (the meeting id is what later calls use).
* Status. Cancelled when `bookIt.status` or the calendar/flat `status` says canceled or
  cancelled — either source cancelling wins, as the calendar invite is then gone or LeanData no
  longer stands behind it. scheduled, rescheduled and confirmed all map to `scheduled`: one
  BookIt meeting must not flap between `scheduled` and `confirmed` depending on which shape or
  endpoint it was read from. Any other value is a NormaliseError naming it.
* Times are epoch milliseconds. A value that would fall before 2000-01-01 is refused: it is
  almost certainly seconds, and guessing would move the meeting by decades.
* People. Organizer (`calendarEvent.organizer.email` or `organizer_email`) is the host. The
  attendee is the non-organizer, non-`self` attendee whose email is the record's scope (the
  prospect we asked about), else the first such attendee.
* `GET /v1/meetings` has no pagination: the answer is the prospect's whole set for the window,
  so an email whose read completed and parsed as a JSON array closes a sweep. The filter is by
  scheduled start, and whether `start` is inclusive is not said, so the sweep's window starts
  1 ms after the `start` we sent: a meeting exactly on the boundary is never called vanished.
  No sweep when: the answer is not an array, an item has no id (the seen-set would be
  incomplete), or the read failed. A 404 or other 4xx for one email (e.g. an address LeanData
  refuses, or a "not found" for a prospect with no meetings — undocumented) skips that email
  without a sweep and the round goes on; 401/403, 429, 5xx and timeouts stop the round, which
  resumes after the last completed email.
* Watch list. Which emails a poll reads is a priority schedule (leandata_watch.py): emails never
  read, with a meeting starting within 10 minutes or changed within 10 minutes are read every
  interval; the rest are spread over what the rate leaves, so the worst staleness is known and
  shown by `bookingsync status`. Each email's last read is kept in the cursor.
* Rate limits. LeanData documents no BookIt limit and returns no rate-limit headers and no
  Retry-After, so we pace requests ourselves (`requests_per_second`) and rely on the shared
  backoff if a 429 ever comes.
* Errors come as `{"error": "..."}`, and as the API Gateway's `{"message": "Unauthorized"}` on
  auth failures; both are read.
* No webhooks are documented, so the adapter is no `WebhookReceiver` (the web layer refuses
  every delivery).

Writes (`create`, `reschedule`, `cancel`; pure pieces and their readings in leandata_booking.py):

* Settings, all optional so a read-only connection needs none: `link_id` (a single-meeting-type
  BookIt link: availability by `fetch-availability {linkId}`, booking with `linkId`) or
  `trigger_node` + `routing_inputs` (`route-and-fetch-availability`, then booking with the one-shot
  `routing.token`); `form_defaults` (values for form fields the attendee cannot fill); `timezone`
  (IANA, for the prospect's confirmation email when the meeting has none; default UTC).
* Capabilities. `capabilities` is a ClassVar and says what LeanData can do: CREATE, RESCHEDULE and
  CANCEL are declared for every connection. Reschedule and cancel need no settings (they work on
  a meeting id). `create` on a connection with neither link_id nor trigger_node raises
  ProviderRejected with a sentence naming the settings, before any request.
* find_booking (FIND_BOOKING, after a lost answer): BookIt has no field for our reference, so
  the booking is the prospect's active meeting at exactly that start and end
  (`GET /v1/meetings?prospectEmail=`), the same lookup create makes before booking.
* create: an active meeting of the prospect at exactly that start and end is looked up first
  (`GET /v1/meetings?prospectEmail=`) and returned if found, so a create whose answer was lost can
  be replayed without a second booking (BookIt has no idempotency key and no place for our
  reference). Then availability; the slot equal to the meeting's start and end (else
  SlotUnavailable naming the time); form fields; the endpoint `pageInfo.displayAllPoolAvailability`
  demands. "The selected time is no longer available." fetches availability again and retries
  while the slot is still offered, at most MAX_BOOKING_ATTEMPTS bookings, then SlotUnavailable.
  "This link only allows one booking..." is a ProviderRejected. A booking POST that timed out or
  got a 5xx (or an unreadable 2xx) is never re-sent: the prospect's meetings are looked up; a
  meeting at that start and end is the booking; none is ProviderUnavailable saying it was not
  booked as far as LeanData shows, and the worker's next attempt starts with the same lookup.
  (A POST that never left — a refused connection — is raised as it is.)
* The answer `{meetingId, organizerEmail}` is re-read with `GET /v1/meeting/:id` for a full
  record; the external id is the created `meetingId` whatever the re-read's ids say (a mismatch
  is logged). If the re-read fails the booking still stands, and the record is built from the
  request, the `meetingId` and `organizerEmail`.
* reschedule: `fetch-availability {meetingId}`; a meeting already at the new time (its
  `calendarEvent.scheduledTime`) is not patched; the new slot must be offered (else
  SlotUnavailable); `PATCH /v1/meeting/:id {scheduledTime: {start_time, end_time, timezone}}`,
  with the same bounded retry on the race message. A PATCH that timed out is followed by
  `GET /v1/meeting/:id`: at the new time it is done; otherwise availability is fetched again and
  the PATCH re-sent once (moving to the same time twice ends in the same state); a second loss is
  ProviderUnavailable.
* cancel: `DELETE /v1/meeting/:id` (replayed on 5xx/timeouts by the shared policy: deleting twice
  is harmless). A 404 means already gone and counts as cancelled.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator

from bookingsync.adapters import leandata_booking as booking
from bookingsync.adapters import leandata_watch as watch
from bookingsync.adapters.base import (
    BookingShape,
    BookingRequest,
    Capability,
    Page,
    RawRecord,
    ReadContext,
    Sweep,
)
from bookingsync.adapters.fields import as_email, as_table, unusable
from bookingsync.adapters.http import ProviderHttp, response_json
from bookingsync.adapters.settings import AdapterSettings
from bookingsync.adapters.time_formats import epoch_ms, from_epoch_ms, iso_ms_z
from bookingsync.models.errors import (
    AnswerLost,
    NormaliseError,
    ProviderError,
    ProviderNotFound,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    SlotUnavailable,
)
from bookingsync.models.meeting import Meeting, MeetingStatus, Person, SourceRecord, normalise_email

log = logging.getLogger(__name__)

PROVIDER = "leandata"
# Epoch ms before this are taken for seconds sent by mistake, not for meetings in 1970.
EARLIEST_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
CANCELLED = frozenset({"canceled", "cancelled"})
ACTIVE = frozenset({"scheduled", "rescheduled", "confirmed"})


# -- normalise: pure ----------------------------------------------------------------------------


def record_id(payload: Any) -> str | None:
    """The meeting id in either documented shape, or None."""
    if not isinstance(payload, dict):
        return None
    book_it, event = as_table(payload.get("bookIt")), as_table(payload.get("calendarEvent"))
    for candidate in (payload.get("id"), book_it.get("id"), book_it.get("meetingId"), event.get("id")):
        if isinstance(candidate, (str, int)) and not isinstance(candidate, bool) and str(candidate).strip():
            return str(candidate).strip()
    return None


def _status(payload: Mapping[str, Any], event: Mapping[str, Any]) -> MeetingStatus:
    said = [
        (where, value.strip().lower())
        for where, value in (
            ("bookIt.status", as_table(payload.get("bookIt")).get("status")),
            ("status", event.get("status")),
        )
        if isinstance(value, str) and value.strip()
    ]
    if not said:
        raise NormaliseError("the LeanData meeting has no status (neither bookIt.status nor status)")
    if any(value in CANCELLED for _, value in said):
        return MeetingStatus.CANCELLED
    for where, value in said:
        if value not in ACTIVE:
            raise NormaliseError(
                f"the LeanData meeting has {where} {value!r}, which is not canceled, scheduled, rescheduled or confirmed"
            )
    return MeetingStatus.SCHEDULED


def _epoch_ms(times: Mapping[str, Any], name: str) -> datetime:
    value = times.get(name)
    if value is None:
        raise NormaliseError(f"the LeanData meeting has no scheduledTime.{name}")
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise NormaliseError(
            f"the LeanData meeting's scheduledTime.{name} {value!r} is not epoch milliseconds"
        )
    if value < EARLIEST_MS:
        raise NormaliseError(
            f"the LeanData meeting's scheduledTime.{name} {value!r} is before 2000 as milliseconds; it looks like seconds"
        )
    try:
        return datetime.fromtimestamp(value / 1000, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise NormaliseError(
            f"the LeanData meeting's scheduledTime.{name} {value!r} is out of range"
        ) from exc


def _people(
    event: Mapping[str, Any], payload: Mapping[str, Any], scope: str | None
) -> tuple[Person, tuple[str, ...]]:
    organizer = as_email(as_table(event.get("organizer")).get("email")) or as_email(
        payload.get("organizer_email")
    )
    guests = []
    attendees = event.get("attendees")
    for attendee in attendees if isinstance(attendees, list) else ():
        if (
            not isinstance(attendee, dict)
            or attendee.get("organizer") is True
            or attendee.get("self") is True
        ):
            continue
        email = as_email(attendee.get("email"))
        if email is None or email == organizer:
            continue
        guests.append((email, attendee))
    wanted = as_email(scope)
    chosen = next((g for g in guests if g[0] == wanted), guests[0] if guests else None)
    if chosen is None:
        person = Person()
    else:
        email, attendee = chosen
        name = attendee.get("displayName") or attendee.get("name")
        person = Person(email=email, name=name if isinstance(name, str) else None)
    return person, (organizer,) if organizer else ()


def normalise_meeting(payload: Any, scope: str | None = None) -> SourceRecord:
    """A BookIt meeting, in either documented shape, as a canonical `SourceRecord`."""
    if not isinstance(payload, dict):
        raise NormaliseError(f"a LeanData meeting must be a JSON object, not {type(payload).__name__}")
    external_id = record_id(payload)
    if external_id is None:
        raise NormaliseError("the LeanData meeting has no id (neither id nor calendarEvent.id)")
    # The nested shape keeps the calendar fields in calendarEvent; the flat one at the top.
    event = as_table(payload.get("calendarEvent")) or payload
    times = event.get("scheduledTime")
    if not isinstance(times, dict):
        raise NormaliseError(f"the LeanData meeting {external_id} has no scheduledTime object")
    start, end = _epoch_ms(times, "start_time"), _epoch_ms(times, "end_time")
    attendee, hosts = _people(event, payload, scope)
    title = event.get("title")
    try:
        meeting = Meeting(
            status=_status(payload, event),
            title=title.strip() or None if isinstance(title, str) else None,
            start=start,
            end=end,
            attendee=attendee,
            hosts=hosts,
        )
        return SourceRecord(external_id=external_id, meeting=meeting, scope=scope)
    except ValidationError as exc:
        raise unusable(f"the LeanData meeting {external_id}", exc) from exc


# -- the adapter: the HTTP edge -----------------------------------------------------------------


def error_message(response: httpx.Response) -> str:
    """`{"error": ...}` from BookIt, `{"message": ...}` from the API Gateway in front of it."""
    body = response.json()
    if not isinstance(body, dict):
        return ""
    return str(body.get("error") or body.get("message") or "")


class LeanDataSettings(AdapterSettings):
    """What a LeanData BookIt connection takes (README: Connection settings by provider)."""

    label: ClassVar[str] = "LeanData"
    credential: ClassVar[str] = "api_key"

    base_url: str = Field(description="BookIt's API address, e.g. `https://api.leandata.com`")
    api_key: SecretStr = Field(description="the BookIt API key (sent as `X-Api-Key`)")
    watch_emails: tuple[str, ...] = Field(
        default=(),
        description="prospect emails always read (beside the attendees of upcoming and recent meetings)",
    )
    lookback_days: int = Field(
        default=7, description="how far back each read of a prospect's meetings starts, in whole days"
    )
    requests_per_second: float = Field(
        default=5.0, description="our pace (BookIt documents no limit and sends no Retry-After)"
    )
    timeout: float = Field(default=15.0, gt=0, description="seconds one request may take")
    link_id: str | None = Field(
        default=None,
        description="the single-meeting-type BookIt link mirrored meetings are booked through (or `trigger_node`)",
    )
    trigger_node: str | None = Field(
        default=None, description="the BookIt prospect trigger node that routes a booking (or `link_id`)"
    )
    routing_inputs: dict[str, Any] | None = Field(
        default=None, description="trigger node input name → value (`{email}`, `{name}`, … are filled in)"
    )
    form_defaults: dict[str, Any] | None = Field(
        default=None, description="booking form label → value for fields the meeting does not fill"
    )
    timezone: str = Field(default="UTC", description="the IANA zone bookings are made in")

    @field_validator("lookback_days", mode="before")
    @classmethod
    def _lookback(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError("lookback_days must be a whole number of days, zero or more")
        return value

    @field_validator("requests_per_second", mode="before")
    @classmethod
    def _rate(cls, value: Any) -> Any:
        if isinstance(value, bool) or not (isinstance(value, (int, float)) and value > 0):
            raise ValueError("requests_per_second must be more than zero")
        return value

    @field_validator("watch_emails")
    @classmethod
    def _emails(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        emails: list[str] = []
        for raw in value:
            try:
                email = normalise_email(raw)
            except ValueError as exc:
                raise ValueError(f"watch_emails has {raw!r}, which is not an email address") from exc
            if email and email not in emails:
                emails.append(email)
        return tuple(emails)

    @model_validator(mode="after")
    def _booking_settings(self) -> LeanDataSettings:
        self.booking_settings()  # raises a keyed ValueError naming the booking setting to fix
        return self

    def booking_settings(self) -> booking.BookingSettings:
        """The booking settings, checked (a ValueError naming the key to fix)."""
        return booking.booking_settings(
            link_id=self.link_id,
            trigger_node=self.trigger_node,
            routing_inputs=self.routing_inputs,
            form_defaults=self.form_defaults,
            timezone=self.timezone,
        )

    def booking_problem(self) -> str | None:
        if not (self.link_id or self.trigger_node):
            return (
                "set options.link_id (a single-meeting-type BookIt link) or options.trigger_node (a BookIt "
                "prospect trigger node) to say where mirrored meetings are booked"
            )
        return None


class LeanDataAdapter:
    provider: ClassVar[str] = PROVIDER
    settings_model: ClassVar[type[AdapterSettings]] = LeanDataSettings
    shape: ClassVar[BookingShape] = BookingShape()  # epoch milliseconds, any length
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.LOOKUP_BY_EMAIL,
            Capability.CREATE,
            Capability.RESCHEDULE,
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
        settings = LeanDataSettings.checked(connection_id, values)
        self._booking = settings.booking_settings()
        self.connection_id = connection_id
        self._watch = frozenset(settings.watch_emails)
        self._lookback = timedelta(days=settings.lookback_days)
        self._rate = float(settings.requests_per_second)
        self._http = ProviderHttp(
            provider=PROVIDER,
            base_url=settings.base_url.rstrip("/"),
            headers={"X-Api-Key": settings.api_key.get_secret_value(), "Accept": "application/json"},
            error_message=error_message,
            timeout=settings.timeout,
            transport=transport,
            sleep=sleep,
            min_interval=1.0 / settings.requests_per_second,
        )

    def emails(self, context: ReadContext) -> list[str]:
        """This round's prospects: configured and asked-for emails, normalised and sorted."""
        found = set(self._watch)
        for value in context.watch_emails:
            email = as_email(value)
            if email:
                found.add(email)
            else:
                log.warning("leandata %s: skipping watch email %r, not an address", self.connection_id, value)
        return sorted(found)

    def read(self, cursor: dict[str, Any] | None, context: ReadContext) -> Iterator[Page]:
        """One page per prospect email that is due (leandata_watch.py decides which, in what order).

        Cursor: {"read": {email: unix seconds of its last read}}, for the emails still watched (an
        older version's {"after": email} is read too: leandata_watch.last_reads). Saved after
        every email, so a crash or a deferral goes on with what is still due.
        """
        emails = self.emails(context)
        last_read = watch.last_reads(cursor, emails)  # either cursor form, see there
        schedule = watch.plan(
            emails,
            last_read,
            context.watch_hints,
            context.now,
            interval=context.interval_seconds,
            rate=self._rate,
        )
        start = context.now - self._lookback
        start = start.replace(microsecond=start.microsecond // 1000 * 1000)
        if not schedule.due:
            yield Page(records=[], cursor={"read": last_read}, watch=schedule.summary)
            return
        for index, email in enumerate(schedule.due):
            records, sweep = self._read_email(email, start)
            last_read[email] = int(context.now.timestamp())
            last = index == len(schedule.due) - 1
            yield Page(
                records=records,
                cursor={"read": dict(last_read)},
                sweep=sweep,
                watch=schedule.summary if last else None,
            )

    def _read_email(self, email: str, start: datetime) -> tuple[list[RawRecord], Sweep | None]:
        try:
            response = self._http.request(
                "GET", "/v1/meetings", params={"prospectEmail": email, "start": iso_ms_z(start)}
            )
        except (ProviderNotFound, ProviderRejected) as exc:
            log.warning(
                "leandata %s: skipping %s this round without a sweep: %s", self.connection_id, email, exc
            )
            return [], None
        body = response_json(PROVIDER, response)
        if not isinstance(body, list):
            log.error(
                "leandata %s: GET /v1/meetings for %s answered %s, not an array; no sweep",
                self.connection_id,
                email,
                type(body).__name__,
            )
            return [], None
        records = [RawRecord(payload=item, external_id=record_id(item), scope=email) for item in body]
        if any(r.external_id is None for r in records):
            log.warning(
                "leandata %s: a meeting of %s has no id; no sweep this round", self.connection_id, email
            )
            return records, None
        seen = frozenset(r.external_id for r in records if r.external_id is not None)
        # 1 ms past what we sent: the filter's inclusivity is undocumented (see module docstring).
        return records, Sweep(scope=email, window_start=start + timedelta(milliseconds=1), seen=seen)

    def get_meeting(self, meeting_id: str) -> RawRecord:
        """`GET /v1/meeting/:meetingId`; ProviderNotFound when LeanData has no such meeting."""
        response = self._http.request("GET", f"/v1/meeting/{quote(meeting_id, safe='')}")
        body = response_json(PROVIDER, response)
        if not isinstance(body, dict):
            raise ProviderUnavailable(
                PROVIDER, f"GET /v1/meeting/{meeting_id} answered without a meeting object"
            )
        return RawRecord(payload=body, external_id=record_id(body) or meeting_id)

    def normalise(self, record: RawRecord) -> SourceRecord:
        return normalise_meeting(record.payload, record.scope)

    # -- writes ---------------------------------------------------------------------------------

    def create(self, request: BookingRequest) -> SourceRecord:
        """Book `request.meeting` at exactly its start and end for its attendee (see the docstring)."""
        settings = self._booking
        if not settings.can_create:
            raise ProviderRejected(
                PROVIDER,
                f"connection {self.connection_id!r} cannot create LeanData meetings: set options.link_id "
                "(a single-meeting-type BookIt link) or options.trigger_node (a BookIt prospect trigger node)",
            )
        meeting = request.meeting
        email = meeting.attendee.email
        if not email:
            raise ProviderRejected(
                PROVIDER, "the meeting has no attendee email, and BookIt books for a prospect's email"
            )
        start_ms, end_ms = epoch_ms(meeting.start), epoch_ms(meeting.end)
        when = booking.describe_slot(start_ms, end_ms)
        existing = self._find_booked(email, start_ms, end_ms)
        if existing is not None:
            log.info(
                "leandata %s: %s already has meeting %s at %s; not booking again",
                self.connection_id,
                email,
                existing.external_id,
                when,
            )
            return existing
        values = booking.attendee_values(meeting, request.reference)
        timezone = meeting.timezone or settings.timezone
        availability, identity = self._first_availability(values)
        attempt = 0
        while True:
            attempt += 1
            slot = availability.slot(start_ms, end_ms)
            if slot is None:
                again = f" after {attempt - 1} race(s) with other bookings" if attempt > 1 else ""
                raise SlotUnavailable(
                    PROVIDER, f"{when} is not among the times BookIt offers for {email}{again}"
                )
            body = booking.booking_body(
                identity,
                availability,
                slot,
                timezone,
                booking.user_fields(availability, values, settings.form_defaults),
            )
            path = booking.ROUND_ROBIN_PATH if availability.round_robin else booking.MEETING_PATH
            try:
                answer = response_json(PROVIDER, self._http.request("POST", path, json=body))
            except ProviderUnavailable as exc:
                if _never_sent(exc):
                    raise
                return self._after_lost_booking(exc, f"POST {path}", email, start_ms, end_ms)
            except ProviderRejected as exc:
                if booking.is_slot_taken(exc):
                    if attempt >= booking.MAX_BOOKING_ATTEMPTS:
                        raise SlotUnavailable(
                            PROVIDER,
                            f"{when} for {email} was taken by another booking {attempt} times between "
                            f"availability and booking ({exc.message})",
                            status=exc.status,
                        ) from exc
                    log.info(
                        "leandata %s: %s was just taken; fetching availability again (attempt %d)",
                        self.connection_id,
                        when,
                        attempt,
                    )
                    availability = self._fetch(identity)
                    if "token" in identity and availability.token:
                        identity = {"token": availability.token}
                    continue
                if booking.is_link_used(exc):
                    raise ProviderRejected(
                        PROVIDER,
                        f"the BookIt link {settings.link_id or '(routed)'} only allows one booking and has "
                        f"already been used ({exc.message}); configure a reusable link",
                        status=exc.status,
                    ) from exc
                raise
            return self._booked(answer, email, meeting, timezone, f"POST {path}")

    def reschedule(self, external_id: str, request: BookingRequest) -> SourceRecord:
        """Move meeting `external_id` to exactly `request.meeting`'s start and end."""
        meeting = request.meeting
        start_ms, end_ms = epoch_ms(meeting.start), epoch_ms(meeting.end)
        when = booking.describe_slot(start_ms, end_ms)
        timezone = meeting.timezone or self._booking.timezone
        path = f"/v1/meeting/{quote(external_id, safe='')}"
        identity = {"meetingId": external_id}
        scope = meeting.attendee.email
        availability = self._fetch(identity)
        races = lost = 0
        while True:
            if availability.current == (start_ms, end_ms):
                log.info("leandata %s: meeting %s is already at %s", self.connection_id, external_id, when)
                return self._reread(external_id, scope, meeting, timezone, None)
            slot = availability.slot(start_ms, end_ms)
            if slot is None:
                raise SlotUnavailable(
                    PROVIDER, f"{when} is not among the times BookIt offers to move meeting {external_id} to"
                )
            body = {"scheduledTime": booking.scheduled_time(slot, timezone, round_robin=False)}
            try:
                answer = response_json(PROVIDER, self._http.request("PATCH", path, json=body))
            except ProviderUnavailable as exc:
                if _never_sent(exc):
                    raise
                # Docs: re-read and compare scheduledTime before deciding whether to send again.
                if self._times_of(external_id, exc, when) == (start_ms, end_ms):
                    return self._reread(external_id, scope, meeting, timezone, None)
                lost += 1
                if lost > 1:
                    raise ProviderUnavailable(
                        PROVIDER,
                        f"PATCH {path} to {when} got no answer twice ({exc.message}) and the meeting is "
                        "not at the new time; not sending it a third time",
                        status=exc.status,
                    ) from exc
                log.warning(
                    "leandata %s: PATCH %s got no answer (%s) and the meeting is not at %s; sending again",
                    self.connection_id,
                    path,
                    exc.message,
                    when,
                )
                availability = self._fetch(identity)
                continue
            except ProviderRejected as exc:
                if booking.is_slot_taken(exc):
                    races += 1
                    if races >= booking.MAX_BOOKING_ATTEMPTS:
                        raise SlotUnavailable(
                            PROVIDER,
                            f"{when} was taken by another booking {races} times before meeting "
                            f"{external_id} could move there ({exc.message})",
                            status=exc.status,
                        ) from exc
                    availability = self._fetch(identity)
                    continue
                raise
            organizer = answer.get("organizerEmail") if isinstance(answer, dict) else None
            return self._reread(external_id, scope, meeting, timezone, organizer)

    def find_booking(self, request: BookingRequest) -> SourceRecord | None:
        email = request.meeting.attendee.email
        if not email:
            return None
        return self._find_booked(email, epoch_ms(request.meeting.start), epoch_ms(request.meeting.end))

    def cancel(self, external_id: str) -> None:
        """`DELETE /v1/meeting/:id`; a meeting LeanData no longer knows (404) counts as cancelled."""
        try:
            self._http.request("DELETE", f"/v1/meeting/{quote(external_id, safe='')}")
        except ProviderNotFound as exc:
            log.info(
                "leandata %s: meeting %s is already gone (%s); nothing to cancel",
                self.connection_id,
                external_id,
                exc.message,
            )

    # -- write helpers --------------------------------------------------------------------------

    def _fetch(self, identity: Mapping[str, str]) -> booking.Availability:
        # A read despite the POST: safe to replay after a timeout or a 5xx.
        response = self._http.request("POST", booking.FETCH_PATH, json=dict(identity), idempotent=True)
        return booking.parse_availability(response_json(PROVIDER, response), f"POST {booking.FETCH_PATH}")

    def _first_availability(
        self, values: Mapping[str, str | None]
    ) -> tuple[booking.Availability, dict[str, str]]:
        settings = self._booking
        if settings.link_id:
            identity = {"linkId": settings.link_id}
            return self._fetch(identity), identity
        uid = str(uuid.uuid4())  # the BookIt log id: unique per submission, as LeanData asks
        body = booking.routing_body(settings, values, uid)
        # Not replayed: routing a prospect is a submission, not a read.
        response = self._http.request("POST", booking.ROUTE_PATH, json=body)
        availability = booking.parse_availability(
            response_json(PROVIDER, response), f"POST {booking.ROUTE_PATH}"
        )
        if availability.token is None:
            raise ProviderUnavailable(
                PROVIDER,
                f"POST {booking.ROUTE_PATH} routed to a calendar but answered no routing.token to book with",
            )
        return availability, {"token": availability.token}

    def _find_booked(self, email: str, start_ms: int, end_ms: int) -> SourceRecord | None:
        """The prospect's active meeting at exactly this start and end, or None."""
        start = from_epoch_ms(start_ms)
        params = {
            "prospectEmail": email,
            "start": iso_ms_z(start - timedelta(minutes=1)),
            "end": iso_ms_z(start + timedelta(minutes=1)),
        }
        try:
            response = self._http.request("GET", "/v1/meetings", params=params)
        except ProviderNotFound:
            return None  # undocumented "no meetings" answer for a prospect LeanData does not know
        body = response_json(PROVIDER, response)
        if not isinstance(body, list):
            raise ProviderUnavailable(
                PROVIDER, f"GET /v1/meetings for {email} answered {type(body).__name__}, not an array"
            )
        for item in body:
            try:
                record = normalise_meeting(item, email)
            except NormaliseError:
                continue
            m = record.meeting
            if m.active and epoch_ms(m.start) == start_ms and epoch_ms(m.end) == end_ms:
                return record
        return None

    def _after_lost_booking(
        self, exc: ProviderUnavailable, call: str, email: str, start_ms: int, end_ms: int
    ) -> SourceRecord:
        when = booking.describe_slot(start_ms, end_ms)
        log.warning(
            "leandata %s: %s for %s at %s got no answer (%s); looking for the meeting before anything else",
            self.connection_id,
            call,
            email,
            when,
            exc.message,
        )
        try:
            found = self._find_booked(email, start_ms, end_ms)
        except ProviderError as lookup:
            raise AnswerLost(
                PROVIDER,
                f"{call} for {email} at {when} got no answer ({exc.message}) and looking for the meeting "
                f"failed too ({lookup.message}); whether it was booked is unknown, and the next attempt looks again "
                "before booking",
                status=exc.status,
            ) from exc
        if found is not None:
            log.info(
                "leandata %s: the booking went through as meeting %s", self.connection_id, found.external_id
            )
            return found
        raise ProviderUnavailable(
            PROVIDER,
            f"{call} for {email} at {when} got no answer ({exc.message}) and LeanData shows no meeting of "
            f"{email} at that time, so it was not booked as far as LeanData shows; not re-sent now (BookIt has no "
            "idempotency key) — the next attempt looks again before booking",
            status=exc.status,
        ) from exc

    def _booked(self, answer: Any, email: str, meeting: Meeting, timezone: str, call: str) -> SourceRecord:
        answer = as_table(answer)
        meeting_id = answer.get("meetingId") or record_id(answer)
        if (
            not isinstance(meeting_id, (str, int))
            or isinstance(meeting_id, bool)
            or not str(meeting_id).strip()
        ):
            start_ms, end_ms = epoch_ms(meeting.start), epoch_ms(meeting.end)
            found = self._find_booked(email, start_ms, end_ms)
            if found is not None:
                return found
            raise AnswerLost(
                PROVIDER, f"{call} answered 2xx without a meetingId, and the meeting cannot be found yet"
            )
        meeting_id = str(meeting_id).strip()
        if isinstance(
            as_table(answer.get("calendarEvent")).get("scheduledTime") or answer.get("scheduledTime"), dict
        ):
            try:
                return _with_id(normalise_meeting(answer, email), meeting_id)
            except NormaliseError:
                pass
        organizer = answer.get("organizerEmail")
        return self._reread(
            meeting_id, email, meeting, timezone, organizer if isinstance(organizer, str) else None
        )

    def _reread(
        self, meeting_id: str, scope: str | None, meeting: Meeting, timezone: str, organizer: str | None
    ) -> SourceRecord:
        """`GET /v1/meeting/:id` normalised; if that fails, the record the write implies."""
        try:
            return _with_id(normalise_meeting(self.get_meeting(meeting_id).payload, scope), meeting_id)
        except (ProviderNotFound, ProviderUnavailable, RateLimited, NormaliseError) as exc:
            log.warning(
                "leandata %s: re-reading meeting %s failed (%s); recording it as written",
                self.connection_id,
                meeting_id,
                exc,
            )
        host = as_email(organizer)
        implied = meeting.model_copy(
            update={
                "status": MeetingStatus.SCHEDULED,
                "timezone": meeting.timezone or timezone,
                "hosts": (host,) if host else meeting.hosts,
            }
        )
        return SourceRecord(external_id=meeting_id, meeting=implied, scope=scope)

    def _times_of(self, meeting_id: str, lost: ProviderUnavailable, when: str) -> tuple[int, int] | None:
        try:
            payload = self.get_meeting(meeting_id).payload
        except ProviderError as exc:
            raise ProviderUnavailable(
                PROVIDER,
                f"moving meeting {meeting_id} to {when} got no answer ({lost.message}) and re-reading it failed "
                f"({exc.message}); whether it moved is unknown",
                status=lost.status,
            ) from lost
        event = as_table(payload.get("calendarEvent")) or payload
        times = as_table(event.get("scheduledTime"))
        start, end = booking.ms_value(times.get("start_time")), booking.ms_value(times.get("end_time"))
        return (start, end) if start is not None and end is not None else None

    def close(self) -> None:
        self._http.close()


def _never_sent(exc: ProviderUnavailable) -> bool:
    """The request never reached LeanData (the connection was refused): nothing can have happened."""
    return isinstance(exc.__cause__, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


def _with_id(record: SourceRecord, meeting_id: str) -> SourceRecord:
    if record.external_id != meeting_id:
        log.warning(
            "leandata: meeting %s reads back with id %s; keeping the id BookIt answered the write with",
            meeting_id,
            record.external_id,
        )
        return SourceRecord(
            external_id=meeting_id,
            meeting=record.meeting,
            source_updated_at=record.source_updated_at,
            scope=record.scope,
        )
    return record
