"""LeanData BookIt: meetings read per watched prospect email (no change feed, no webhooks).

Follows shared/providers/leandata/: bookit-openapi.yml (`GET /v1/meetings`, `GET
/v1/meeting/:meetingId`), the postman collection, leandata-manage-a-meeting.md,
leandata-authentication.yml, leandata-problem-types.yml and leandata-rate-limits.yml.
Ambiguities, and the reading taken:

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
* Rate limits. LeanData documents no BookIt limit and returns no rate-limit headers and no
  Retry-After, so we pace requests ourselves (`requests_per_second`) and rely on the shared
  backoff if a 429 ever comes.
* Errors come as `{"error": "..."}`, and as the API Gateway's `{"message": "Unauthorized"}` on
  auth failures; both are read.
* No webhooks are documented, so `parse_webhook` refuses every delivery.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from bookingsync.adapters.base import Capability, Page, RawRecord, ReadContext, Sweep, WebhookDelivery
from bookingsync.adapters.http import ProviderHttp, response_json
from bookingsync.models.errors import (
    ConfigError,
    NormaliseError,
    ProviderNotFound,
    ProviderRejected,
    ProviderUnavailable,
    WebhookMalformed,
)
from bookingsync.models.meeting import Meeting, MeetingStatus, Person, SourceRecord, normalise_email

log = logging.getLogger(__name__)

PROVIDER = "leandata"
# Epoch ms before this are taken for seconds sent by mistake, not for meetings in 1970.
EARLIEST_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
CANCELLED = frozenset({"canceled", "cancelled"})
ACTIVE = frozenset({"scheduled", "rescheduled", "confirmed"})


# -- normalise: pure ----------------------------------------------------------------------------


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def record_id(payload: Any) -> str | None:
    """The meeting id in either documented shape, or None."""
    if not isinstance(payload, dict):
        return None
    book_it, event = _dict(payload.get("bookIt")), _dict(payload.get("calendarEvent"))
    for candidate in (payload.get("id"), book_it.get("id"), book_it.get("meetingId"), event.get("id")):
        if isinstance(candidate, (str, int)) and not isinstance(candidate, bool) and str(candidate).strip():
            return str(candidate).strip()
    return None


def _status(payload: Mapping[str, Any], event: Mapping[str, Any]) -> MeetingStatus:
    said = [
        (where, value.strip().lower())
        for where, value in (("bookIt.status", _dict(payload.get("bookIt")).get("status")),
                             ("status", event.get("status")))
        if isinstance(value, str) and value.strip()
    ]
    if not said:
        raise NormaliseError("the LeanData meeting has no status (neither bookIt.status nor status)")
    if any(value in CANCELLED for _, value in said):
        return MeetingStatus.CANCELLED
    for where, value in said:
        if value not in ACTIVE:
            raise NormaliseError(f"the LeanData meeting has {where} {value!r}, which is not canceled, scheduled, rescheduled or confirmed")
    return MeetingStatus.SCHEDULED


def _epoch_ms(times: Mapping[str, Any], name: str) -> datetime:
    value = times.get(name)
    if value is None:
        raise NormaliseError(f"the LeanData meeting has no scheduledTime.{name}")
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise NormaliseError(f"the LeanData meeting's scheduledTime.{name} {value!r} is not epoch milliseconds")
    if value < EARLIEST_MS:
        raise NormaliseError(f"the LeanData meeting's scheduledTime.{name} {value!r} is before 2000 as milliseconds; it looks like seconds")
    try:
        return datetime.fromtimestamp(value / 1000, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise NormaliseError(f"the LeanData meeting's scheduledTime.{name} {value!r} is out of range") from exc


def _email(value: Any) -> str | None:
    try:
        return normalise_email(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _people(event: Mapping[str, Any], payload: Mapping[str, Any], scope: str | None) -> tuple[Person, tuple[str, ...]]:
    organizer = _email(_dict(event.get("organizer")).get("email")) or _email(payload.get("organizer_email"))
    guests = []
    attendees = event.get("attendees")
    for attendee in attendees if isinstance(attendees, list) else ():
        if not isinstance(attendee, dict) or attendee.get("organizer") is True or attendee.get("self") is True:
            continue
        email = _email(attendee.get("email"))
        if email is None or email == organizer:
            continue
        guests.append((email, attendee))
    wanted = _email(scope)
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
    event = _dict(payload.get("calendarEvent")) or payload
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
        reasons = "; ".join(err["msg"] for err in exc.errors())
        raise NormaliseError(f"the LeanData meeting {external_id} cannot be used: {reasons}") from exc


# -- the adapter: the HTTP edge -----------------------------------------------------------------


def error_message(response: httpx.Response) -> str:
    """`{"error": ...}` from BookIt, `{"message": ...}` from the API Gateway in front of it."""
    body = response.json()
    if not isinstance(body, dict):
        return ""
    return str(body.get("error") or body.get("message") or "")


def wire_time(value: datetime) -> str:
    """ISO 8601 with milliseconds and Z, the form the BookIt docs spell out."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


class LeanDataAdapter:
    provider: ClassVar[str] = PROVIDER
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.LOOKUP_BY_EMAIL, Capability.LOOKUP_BY_ID}
    )

    def __init__(
        self,
        *,
        connection_id: str,
        base_url: str,
        api_key: str,
        watch_emails: Iterable[str] = (),
        lookback_days: int = 7,
        requests_per_second: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 15.0,
    ) -> None:
        where = f"connection {connection_id!r}"
        if not api_key or not api_key.strip():
            raise ConfigError(f"{where}: the LeanData api_key is empty; set api_key (e.g. api_key = \"env:LEANDATA_API_KEY\")")
        if not base_url.startswith(("https://", "http://")):
            raise ConfigError(f"{where}: base_url {base_url!r} must start with https://")
        if isinstance(lookback_days, bool) or not isinstance(lookback_days, int) or lookback_days < 0:
            raise ConfigError(f"{where}: lookback_days must be a whole number of days, zero or more")
        if not (isinstance(requests_per_second, (int, float)) and requests_per_second > 0):
            raise ConfigError(f"{where}: requests_per_second must be more than zero")
        emails = set()
        for value in watch_emails:
            try:
                email = normalise_email(value)
            except ValueError as exc:
                raise ConfigError(f"{where}: watch_emails has {value!r}, which is not an email address") from exc
            if email:
                emails.add(email)
        self.connection_id = connection_id
        self._watch = frozenset(emails)
        self._lookback = timedelta(days=lookback_days)
        self._http = ProviderHttp(
            provider=PROVIDER,
            base_url=base_url.rstrip("/"),
            headers={"X-Api-Key": api_key.strip(), "Accept": "application/json"},
            error_message=error_message,
            timeout=timeout,
            transport=transport,
            sleep=sleep,
            min_interval=1.0 / requests_per_second,
        )

    def emails(self, context: ReadContext) -> list[str]:
        """This round's prospects: configured and asked-for emails, normalised and sorted."""
        found = set(self._watch)
        for value in context.watch_emails:
            email = _email(value)
            if email:
                found.add(email)
            else:
                log.warning("leandata %s: skipping watch email %r, not an address", self.connection_id, value)
        return sorted(found)

    def read(self, cursor: dict[str, Any] | None, context: ReadContext) -> Iterator[Page]:
        """One page per prospect email. Cursor: {"after": email|None} — the last email done.

        The cursor names an email rather than an index so that a watch list that changed between
        a crash and the resume neither repeats nor skips a prospect.
        """
        after = (cursor or {}).get("after")
        emails = [e for e in self.emails(context) if not isinstance(after, str) or e > after]
        start = context.now - self._lookback
        start = start.replace(microsecond=start.microsecond // 1000 * 1000)
        if not emails and isinstance(after, str):
            # Every email the cursor points past is gone: close the round so the next one restarts.
            yield Page(records=[], cursor={"after": None})
            return
        for index, email in enumerate(emails):
            last = index == len(emails) - 1
            page_cursor = {"after": None if last else email}
            records, sweep = self._read_email(email, start)
            yield Page(records=records, cursor=page_cursor, sweep=sweep)

    def _read_email(self, email: str, start: datetime) -> tuple[list[RawRecord], Sweep | None]:
        try:
            response = self._http.request("GET", "/v1/meetings", params={"prospectEmail": email, "start": wire_time(start)})
        except (ProviderNotFound, ProviderRejected) as exc:
            log.warning("leandata %s: skipping %s this round without a sweep: %s", self.connection_id, email, exc)
            return [], None
        body = response_json(PROVIDER, response)
        if not isinstance(body, list):
            log.error("leandata %s: GET /v1/meetings for %s answered %s, not an array; no sweep",
                      self.connection_id, email, type(body).__name__)
            return [], None
        records = [RawRecord(payload=item, external_id=record_id(item), scope=email) for item in body]
        if any(r.external_id is None for r in records):
            log.warning("leandata %s: a meeting of %s has no id; no sweep this round", self.connection_id, email)
            return records, None
        seen = frozenset(r.external_id for r in records if r.external_id is not None)
        # 1 ms past what we sent: the filter's inclusivity is undocumented (see module docstring).
        return records, Sweep(scope=email, window_start=start + timedelta(milliseconds=1), seen=seen)

    def get_meeting(self, meeting_id: str) -> RawRecord:
        """`GET /v1/meeting/:meetingId`; ProviderNotFound when LeanData has no such meeting."""
        response = self._http.request("GET", f"/v1/meeting/{quote(meeting_id, safe='')}")
        body = response_json(PROVIDER, response)
        if not isinstance(body, dict):
            raise ProviderUnavailable(PROVIDER, f"GET /v1/meeting/{meeting_id} answered without a meeting object")
        return RawRecord(payload=body, external_id=record_id(body) or meeting_id)

    def normalise(self, record: RawRecord) -> SourceRecord:
        return normalise_meeting(record.payload, record.scope)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime, *,
                      method: str = "POST", url: str = "") -> WebhookDelivery:
        raise WebhookMalformed("LeanData BookIt sends no webhooks; this connection only polls")

    def close(self) -> None:
        self._http.close()
