"""Leezy.ai: chatbot-booked meetings, read by polling and by signed webhooks (read-only provider).

Follows Leezy.ai's API documentation: the Meetings API page
(https://staging.leezy.ai/docs/api/meetings), the API overview (envelope, errors, limits;
https://staging.leezy.ai/docs/api/overview), and the webhook pages of production
(https://leezy.ai/docs/api/webhooks) and staging (https://staging.leezy.ai/docs/webhooks/security). Ambiguities, and the reading taken:

* Base URL. The docs give `https://app.leezy.ai/api/v1`; the connection names the host. A
  base_url that already ends in `/api/v1` is accepted and not doubled.
* Order of `GET /meetings` results is undocumented and `since` is "updated after" (strict).
  We ask for `since = watermark - overlap_seconds` (floored to whole seconds, the precision of
  the examples) so records sharing the watermark's timestamp are read again, never skipped;
  the store's content hash makes re-reading harmless.
* Paging under churn (`ChangeRead`). Offset paging over a list ordered by `updated_at` skips a
  record whenever an earlier one moves during the read (it jumps to the end, the rest shift left
  by one), so a read that saw movement could not advance its watermark and, under steady change,
  re-read an ever longer window. Instead every request is anchored on a key: `since` = the newest
  `updated_at` read so far (floored to the second, so records sharing that second come again and
  the ones already handed on are dropped), offset 0. A record that moves lands after the anchor
  and is read later in the same read; an unread record cannot be shifted past an anchor, because
  the server filters by value, not position; a deletion shifts nothing that matters either. So at
  every page "everything up to `position` was read" holds, and the saved watermark is
  `min(position, read start - CLOCK_SKEW_ALLOWANCE)`: it advances every poll, and a poll reads
  what changed in the last margin plus interval, however long the churn lasts. The argument needs
  the listing in `updated_at` order (undocumented); every page is checked, and a server found out
  of order is read by offset under a fixed `since` from then on (remembered in the cursor), which
  advances the watermark only after a read in which nothing moved. More than a page of records in
  one second also falls back to offset paging for the rest of that read. Property-tested with
  random moves and creations during reads (tests/polling/test_leezy_watermark.py).
  The margin is counted from our clock while `updated_at` is Leezy's, so it is widened by
  Leezy's measured lag (adapters/skew.py: every answer's `Date` header, else the newest
  `updated_at`): with Leezy two minutes behind, the cap is `now - 2 min - 30 s`.
* Offsets advance by the number of records received, not by `limit`, in case the server caps
  the page below what we asked for.
* The documented limit is per plan (100 requests/min on Starter, the lowest); with no plan in
  the config we pace at the Starter rate. 429 carries no Retry-After: the HTTP policy backs off.
* Statuses: scheduled, confirmed, completed, cancelled, no_show (also "canceled", the US
  spelling). A set `cancelled_at` means cancelled whatever `status` says. Another status is a
  NormaliseError naming it.
* Times must carry an offset; a naive time is refused, not guessed. `timezone` is the attendee's
  zone and only decorative: an invalid one is dropped and the meeting still normalised. An
  attendee email that is not an address is a NormaliseError (a CRM must not get a wrong person).
* Webhooks: the production page (HMAC-SHA256 over `{X-Leezy-Timestamp}.{raw body}`, hex,
  `sha256=` prefix, 5-minute window) is the contract. The older staging page signs the body
  alone; that form is accepted only with `accept_legacy_signature=True`, and even then the
  timestamp header is required and the window enforced (staging also sends the header).
  No secret configured means every delivery is refused.
* No `meeting.*` webhook `data` example exists. `data` may be a resource `{id, type,
  attributes}` or a flat meeting object; both normalise. For `meeting.cancelled` and
  `meeting.completed` the event type is the newer fact, so it overrides the status in `data`;
  `meeting.scheduled` fills in `scheduled` only when `data` has no status. The event type is
  taken from the signed body; the unsigned `X-Leezy-Event` header is ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx
from pydantic import Field, SecretStr, ValidationError
from pydantic_core import from_json

from bookingsync.adapters import skew
from bookingsync.adapters.base import Capability, Page, RawRecord, ReadContext, WebhookDelivery
from bookingsync.adapters.fields import as_zone, unusable
from bookingsync.adapters.http import ProviderHttp, response_json
from bookingsync.adapters.replay_window import check_sent_at
from bookingsync.adapters.settings import AdapterSettings
from bookingsync.adapters.time_formats import iso_z
from bookingsync.adapters.wall_time import DATE_ONLY, date_only
from bookingsync.models.errors import (
    NormaliseError,
    ProviderUnavailable,
    WebhookMalformed,
    WebhookUnauthorized,
)
from bookingsync.models.meeting import Meeting, MeetingStatus, Person, SourceRecord, normalise_email

log = logging.getLogger(__name__)

PROVIDER = "leezy"
MEETINGS_PATH = "/api/v1/meetings"
MAX_PAGE_SIZE = 100  # documented maximum of `limit`
# The lowest documented plan limit (Starter, 100 requests/min); we do not know the customer's plan.
DEFAULT_REQUESTS_PER_MINUTE = 100.0
# Production docs: receivers MUST reject deliveries more than five minutes from their clock.
SIGNATURE_TOLERANCE = timedelta(minutes=5)
SIGNATURE_PREFIX = "sha256="
# How far Leezy's clock may lag ours and still have mid-read updates re-read by the next poll.
CLOCK_SKEW_ALLOWANCE = timedelta(seconds=30)

STATUSES = {
    "scheduled": MeetingStatus.SCHEDULED,
    "confirmed": MeetingStatus.CONFIRMED,
    "completed": MeetingStatus.COMPLETED,
    "cancelled": MeetingStatus.CANCELLED,
    "canceled": MeetingStatus.CANCELLED,
    "no_show": MeetingStatus.NO_SHOW,
}
# Event type -> status it forces on `data` (None: keep data's status, default scheduled).
HANDLED_EVENTS: dict[str, str | None] = {
    "meeting.scheduled": None,
    "meeting.cancelled": "cancelled",
    "meeting.completed": "completed",
}


# -- paging: pure, no HTTP ----------------------------------------------------------------------


@dataclass
class ChangeRead:
    """One poll of `GET /meetings?since=`, paged by key: what to ask next and which cursor to save.

    Each request asks `since = position - overlap` from offset 0, where `position` is the newest
    `updated_at` read so far: the listing is re-anchored on a key instead of counting positions,
    so a record that moves during the read (jumps to the end) cannot shift an unread one past us.
    Everything up to `position` has been read when the server lists in `updated_at` order, which
    every page is checked for. Two fallbacks page by offset under a fixed `since` instead: a page
    whose records all lie inside the overlap (more than a page of changes in one second), and a
    server found out of order (remembered in the cursor: `keyset: false`); an offset read
    advances `since` only as far as its keyed part proved, or, when nothing moved at all, to its
    newest record (the old rule: no repeat, total unchanged).

    Cursor while a read runs: {"since", "position", "offset", "mode", "started", "high", ...};
    between reads {"since", "offset": 0} (+ "keyset": false once the order was found wrong).
    The saved `since` is never past `started - margin` (see CLOCK_SKEW_ALLOWANCE).
    """

    since: datetime | None
    now: datetime  # when this read started
    margin: timedelta = CLOCK_SKEW_ALLOWANCE
    position: datetime | None = None  # keyed: everything up to here was read
    offset: int = 0
    mode: str = "key"  # key | offset
    keyset: bool = True  # the server lists in updated_at order, as far as we have seen
    high: datetime | None = None
    resumed: bool = False  # a cursor of the older shape, resumed mid-read: no proof
    total: int | None = None
    seen: set[str] = field(default_factory=set)  # ids of this read's offset part
    disturbed: bool = False  # repeats, a changed total or an inconsistent end in the offset part
    # Records read in the anchor's second (id -> updated_at): the next keyed request asks for that
    # second again, and what comes back unchanged is not handed on twice.
    recent: dict[str, str] = field(default_factory=dict)
    fresh: list[Any] = field(default_factory=list)  # the last page less those repeats

    @classmethod
    def start(
        cls, cursor: Mapping[str, Any] | None, now: datetime, margin: timedelta = CLOCK_SKEW_ALLOWANCE
    ) -> ChangeRead:
        if not cursor:
            return cls(since=None, now=now, margin=margin)
        try:
            since = _cursor_time(cursor.get("since"))
            high = _cursor_time(cursor.get("high"))
            position = _cursor_time(cursor.get("position"))
            started = _cursor_time(cursor.get("started"))
            offset = int(cursor.get("offset") or 0)
            if offset < 0:
                raise ValueError("negative offset")
            mode = cursor.get("mode") or ("offset" if offset else "key")
            if mode not in ("key", "offset"):
                raise ValueError(f"mode {mode!r}")
        except (TypeError, ValueError) as exc:
            # A full read is the safe direction: it re-reads, never skips.
            log.warning("leezy: unusable cursor %r (%s); starting a full read", cursor, exc)
            return cls(since=None, now=now, margin=margin)
        keyset = cursor.get("keyset") is not False
        if started is None and offset == 0:  # between reads: a new one starts now
            return cls(
                since=since,
                now=now,
                margin=margin,
                position=since,
                keyset=keyset,
                mode="key" if keyset else "offset",
            )
        return cls(
            since=since,
            now=started or now,
            margin=margin,
            position=position if started else since,
            offset=offset,
            mode=mode if keyset else "offset",
            keyset=keyset,
            high=high,
            resumed=started is None or bool(cursor.get("resumed")),
            # Resumed by offset: the ids seen before the gap are not in the cursor, so a move
            # in the gap (shifting an unread record below the offset) cannot be noticed.
            disturbed=bool(cursor.get("disturbed", False)) or mode == "offset",
            recent={str(k): str(v) for k, v in (cursor.get("recent") or {}).items()},
        )

    def params(self, page_size: int, overlap_seconds: float) -> dict[str, str | int]:
        params: dict[str, str | int] = {"limit": page_size, "offset": self.offset}
        if self.position is not None:
            # From the watermark: the configured overlap. Within a read, re-anchored on a key we
            # just read: only what shares its second (the wire carries whole seconds).
            anchored = self.position != self.since
            asked = self.position - (
                timedelta(microseconds=1) if anchored else timedelta(seconds=overlap_seconds)
            )
            params["since"] = _wire_time(asked.replace(microsecond=0))
        return params

    def take(self, data: list[Any], meta: Mapping[str, Any], page_size: int) -> bool:
        """Account for one received page; True when the read is over."""
        keys: list[datetime] = []
        new = identified = 0
        self.fresh = []
        for resource in data:
            record_id, updated_at = _id_and_updated(resource)
            stamp = _wire_time(updated_at)
            if record_id is None or self.recent.get(record_id) != stamp or stamp is None:
                self.fresh.append(resource)
            if record_id is not None and self.mode == "offset":
                identified += 1
                if record_id in self.seen:
                    self.disturbed = True  # it moved while we paged by offset
                else:
                    new += 1
                    self.seen.add(record_id)
            if updated_at is not None:
                keys.append(updated_at)
                if self.high is None or updated_at > self.high:
                    self.high = updated_at
        ordered = all(a <= b for a, b in zip(keys, keys[1:], strict=False))
        if not ordered:
            self.keyset = False
        total = meta.get("total")
        if isinstance(total, int) and not isinstance(total, bool):
            if self.mode == "offset" and self.total is not None and total != self.total:
                self.disturbed = True
            self.total = total
        has_more = meta.get("has_more")
        if not isinstance(has_more, bool):
            has_more = (self.offset + len(data) < total) if isinstance(total, int) else len(data) >= page_size

        if not data:
            if has_more:
                self.disturbed = True
            return True
        if self.mode == "offset" and new == 0 and identified:
            self.disturbed = True  # the server repeats what we had: it ignores offset
            return True
        if not has_more and isinstance(total, int) and self.offset + len(data) < total:
            self.disturbed = True  # ended short of what the server said it had
        newest = keys[-1] if keys else None
        if (
            self.mode == "key"
            and ordered
            and newest is not None
            and (self.position is None or newest > self.position)
        ):
            self.position = newest  # re-anchor: the next page starts after what was read
            self.offset = 0
            second = newest.replace(microsecond=0)
            self.recent = {
                rid: stamp
                for rid, stamp in self.recent.items()
                if (kept := _cursor_time(stamp)) is not None and kept >= second
            }
            for resource in data:
                rid, at = _id_and_updated(resource)
                wired = _wire_time(at)
                if rid is not None and at is not None and wired is not None and at >= second:
                    self.recent[rid] = wired
        else:
            # No progress by key (a page of one second's records) or out of order: go on by offset
            # under this `since`; `position` stays what the keyed part proved.
            if self.mode == "key":
                self.mode = "offset"
                self.total = total if isinstance(total, int) else None
                self.seen = {rid for rid in (_id_and_updated(r)[0] for r in data) if rid is not None}
            self.offset += len(data)
        return not has_more

    def cursor(self, done: bool) -> dict[str, Any]:
        if not done:
            return {
                "since": _wire_time(self.since),
                "position": _wire_time(self.position),
                "offset": self.offset,
                "mode": self.mode,
                "keyset": self.keyset,
                "started": _wire_time(self.now),
                "high": _wire_time(self.high),
                "resumed": self.resumed,
                "disturbed": self.disturbed,
                "recent": dict(self.recent),
            }
        cursor: dict[str, Any] = {"since": _wire_time(self._settled()), "offset": 0}
        if not self.keyset:
            cursor["keyset"] = False
        return cursor

    def _settled(self) -> datetime | None:
        """The watermark a finished read may save: what it proved, never past `now - margin`."""
        if self.resumed:
            return self.since
        if self.keyset and self.mode == "key":
            proved = self.position  # keyed to the end
        elif self.keyset and not self.disturbed:
            proved = self.high  # the offset part saw nothing move
        elif self.keyset:
            proved = self.position  # only the keyed part is proof
        elif not self.disturbed:
            proved = self.high  # out of order, but nothing moved: the old rule
        else:
            proved = self.since
        if proved is None:
            return self.since
        candidate = min(proved, self.now - self.margin)
        return candidate if self.since is None else max(self.since, candidate)

    @property
    def proven(self) -> bool:
        return not (self.resumed or (self.mode == "offset" and self.disturbed))


def _cursor_time(value: Any) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("naive time in cursor")
    return parsed.astimezone(UTC)


def _wire_time(value: datetime | None) -> str | None:
    return None if value is None else iso_z(value)


def _id_and_updated(resource: Any) -> tuple[str | None, datetime | None]:
    if not isinstance(resource, dict):
        return None, None
    try:
        updated = _time(_attributes(resource), "updated_at", required=False)
    except NormaliseError:
        updated = None
    return _record_id(resource), updated


def _record_id(resource: Mapping[str, Any]) -> str | None:
    record_id = resource.get("id")
    return str(record_id).strip() if isinstance(record_id, (str, int)) and str(record_id).strip() else None


# -- normalise: pure ----------------------------------------------------------------------------


def _attributes(resource: Mapping[str, Any]) -> Mapping[str, Any]:
    attributes = resource.get("attributes")
    return attributes if isinstance(attributes, dict) else resource


def _time(attributes: Mapping[str, Any], name: str, *, required: bool) -> datetime | None:
    value = attributes.get(name)
    if value is None or value == "":
        if required:
            raise NormaliseError(f"the Leezy meeting has no {name}")
        return None
    if not isinstance(value, str):
        raise NormaliseError(f"the Leezy meeting's {name} {value!r} is not an ISO 8601 time")
    if date_only(value):
        raise NormaliseError(f"the Leezy meeting's {name} {value!r} {DATE_ONLY}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise NormaliseError(f"the Leezy meeting's {name} {value!r} is not an ISO 8601 time") from exc
    if parsed.tzinfo is None:
        raise NormaliseError(
            f"the Leezy meeting's {name} {value!r} has no UTC offset, so its instant is unknown"
        )
    return parsed.astimezone(UTC)


def _status(attributes: Mapping[str, Any]) -> MeetingStatus:
    if attributes.get("cancelled_at"):
        return MeetingStatus.CANCELLED
    raw = attributes.get("status")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise NormaliseError("the Leezy meeting has no status")
    status = STATUSES.get(str(raw).strip().lower())
    if status is None:
        known = ", ".join(sorted(STATUSES))
        raise NormaliseError(f"the Leezy meeting has status {raw!r}, which is not one of {known}")
    return status


def _attendee(value: Any) -> Person:
    if value is None:
        return Person()
    if not isinstance(value, dict):
        raise NormaliseError(f"the Leezy meeting's attendee {value!r} is not an object")
    email = value.get("email")
    try:
        email = normalise_email(email) if isinstance(email, str) else None
    except ValueError as exc:
        raise NormaliseError(
            f"the Leezy meeting's attendee.email {value.get('email')!r} is not an email address"
        ) from exc
    name, phone = value.get("name"), value.get("phone")
    return Person(
        email=email,
        name=name if isinstance(name, str) else None,
        phone=phone if isinstance(phone, str) else None,
    )


def normalise_meeting(payload: Any) -> SourceRecord:
    """A Leezy meeting resource (or a flat meeting object) as a canonical `SourceRecord`."""
    if not isinstance(payload, dict):
        raise NormaliseError(f"a Leezy meeting must be a JSON object, not {type(payload).__name__}")
    kind = payload.get("type")
    if "attributes" in payload and kind is not None and kind != "meeting":
        raise NormaliseError(f"the Leezy resource has type {kind!r}, not 'meeting'")
    attributes = _attributes(payload)
    record_id = payload.get("id")
    if not isinstance(record_id, (str, int)) or not str(record_id).strip():
        raise NormaliseError("the Leezy meeting has no id")
    start = _time(attributes, "start_time", required=True)
    end = _time(attributes, "end_time", required=True)
    title, url = attributes.get("title"), attributes.get("meeting_url")
    try:
        meeting = Meeting(
            status=_status(attributes),
            title=title.strip() or None if isinstance(title, str) else None,
            start=start,
            end=end,
            timezone=as_zone(attributes.get("timezone"), PROVIDER),
            attendee=_attendee(attributes.get("attendee")),
            conference_url=url.strip() or None if isinstance(url, str) else None,
        )
        return SourceRecord(
            external_id=str(record_id),
            meeting=meeting,
            source_updated_at=_time(attributes, "updated_at", required=False),
        )
    except ValidationError as exc:
        raise unusable(f"the Leezy meeting {record_id}", exc) from exc


# -- webhooks: pure -----------------------------------------------------------------------------


def verify_signature(
    headers: Mapping[str, str], body: bytes, secret: str | None, now: datetime, *, accept_legacy: bool
) -> None:
    """Raise WebhookUnauthorized unless the delivery is signed with `secret` within the window."""
    if not secret:
        raise WebhookUnauthorized(
            "no webhook_secret is configured for this Leezy connection, so no delivery can be trusted"
        )
    lower = _lowered(headers)
    timestamp = (lower.get("x-leezy-timestamp") or "").strip()
    signature = (lower.get("x-leezy-signature") or "").strip()
    if not timestamp or not signature:
        raise WebhookUnauthorized("the delivery lacks the X-Leezy-Timestamp or X-Leezy-Signature header")
    check_sent_at("X-Leezy-Timestamp", timestamp, now, tolerance=SIGNATURE_TOLERANCE)
    if not signature.lower().startswith(SIGNATURE_PREFIX):
        raise WebhookUnauthorized("X-Leezy-Signature does not start with 'sha256='")
    given = signature[len(SIGNATURE_PREFIX) :].strip().lower()
    key = secret.encode()
    expected = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    if hmac.compare_digest(expected, given):
        return
    if accept_legacy and hmac.compare_digest(hmac.new(key, body, hashlib.sha256).hexdigest(), given):
        return
    raise WebhookUnauthorized("X-Leezy-Signature does not match this connection's webhook secret")


def parse_delivery(headers: Mapping[str, str], body: bytes) -> WebhookDelivery:
    """The records of a verified delivery body; WebhookMalformed if it is not Leezy's envelope."""
    try:
        envelope = from_json(body)  # pydantic's parser: half the CPU of json.loads on a delivery
    except ValueError as exc:
        raise WebhookMalformed(f"the Leezy delivery body is not JSON: {exc}") from exc
    if not isinstance(envelope, dict):
        raise WebhookMalformed("the Leezy delivery body is not a JSON object")
    event_id, event_type, data = envelope.get("id"), envelope.get("type"), envelope.get("data")
    if not isinstance(event_type, str) or not event_type:
        raise WebhookMalformed("the Leezy delivery has no event 'type'")
    if not isinstance(event_id, str) or not event_id:
        raise WebhookMalformed("the Leezy delivery has no event 'id'")
    if not isinstance(data, dict):
        raise WebhookMalformed("the Leezy delivery's 'data' is not a JSON object")
    delivery_id = (_lowered(headers).get("x-leezy-delivery") or "").strip() or event_id
    if event_type not in HANDLED_EVENTS:
        return WebhookDelivery(delivery_id=delivery_id, event_type=event_type, records=[], handled=False)
    payload = _with_event_status(data, HANDLED_EVENTS[event_type])
    record_id = _record_id(payload) if isinstance(payload, dict) else None
    return WebhookDelivery(
        delivery_id=delivery_id,
        event_type=event_type,
        records=[RawRecord(payload=payload, external_id=record_id)],
    )


def _lowered(headers: Mapping[str, str]) -> Mapping[str, str]:
    # The web endpoint hands over ASGI's names, lower-case already: no copy per delivery for those.
    return headers if all(name.islower() for name in headers) else {k.lower(): v for k, v in headers.items()}


def _with_event_status(data: dict[str, Any], forced: str | None) -> dict[str, Any]:
    # Copy, so the receipt keeps what Leezy sent while ingest sees what the event means.
    nested = isinstance(data.get("attributes"), dict)
    attributes = dict(data["attributes"]) if nested else dict(data)
    if forced is not None:
        attributes["status"] = forced
    elif not attributes.get("status"):
        attributes["status"] = "scheduled"
    return {**data, "attributes": attributes} if nested else attributes


# -- the adapter: the HTTP edge -----------------------------------------------------------------


def error_message(response: httpx.Response) -> str:
    """Leezy's `{error, error_description}` envelope as one line."""
    body = response.json()
    if not isinstance(body, dict):
        return ""
    code, description = body.get("error"), body.get("error_description")
    if description and code:
        return f"{description} ({code})"
    return str(description or code or "")


class LeezySettings(AdapterSettings):
    """What a Leezy connection takes (README: Connection settings by provider)."""

    label: ClassVar[str] = "Leezy"

    base_url: str = Field(
        description="Leezy's address, e.g. `https://app.leezy.ai` (a trailing `/api/v1` is dropped)"
    )
    token: SecretStr = Field(description="bearer token with `meetings:read`")
    webhook_secret: SecretStr | None = Field(
        default=None, description="the secret Leezy signs webhooks with; without it every delivery is refused"
    )
    accept_legacy_signature: bool = Field(
        default=False, description="also accept Leezy's older signature over the body alone"
    )
    page_size: int = Field(
        default=MAX_PAGE_SIZE,
        ge=1,
        le=MAX_PAGE_SIZE,
        description="meetings per page (at most 100, Leezy's maximum)",
    )
    overlap_seconds: float = Field(
        default=1.0,
        ge=0,
        allow_inf_nan=False,
        description="how far each read reaches back before the last one's watermark (ties at a page boundary)",
    )
    requests_per_minute: float = Field(
        default=DEFAULT_REQUESTS_PER_MINUTE,
        gt=0,
        description="our pace at Leezy (its Starter plan allows 100)",
    )
    timeout: float = Field(default=15.0, gt=0, description="seconds one request may take")


class LeezyAdapter:
    provider: ClassVar[str] = PROVIDER
    settings_model: ClassVar[type[AdapterSettings]] = LeezySettings
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.LIST_CHANGES, Capability.RECEIVE_WEBHOOKS}
    )

    def __init__(
        self,
        *,
        connection_id: str,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        **values: Any,
    ) -> None:
        settings = LeezySettings.checked(connection_id, values)
        self.connection_id = connection_id
        self._secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
        self._accept_legacy = settings.accept_legacy_signature
        self._page_size = settings.page_size
        self._overlap = settings.overlap_seconds
        self._skew = skew.for_connection(connection_id)
        self._http = ProviderHttp(
            provider=PROVIDER,
            base_url=settings.base_url.rstrip("/").removesuffix("/api/v1"),
            headers={
                "Authorization": f"Bearer {settings.token.get_secret_value()}",
                "Accept": "application/json",
            },
            error_message=error_message,
            timeout=settings.timeout,
            transport=transport,
            sleep=sleep,
            min_interval=60.0 / settings.requests_per_minute,
            observe_date=self._skew.observe_date,
        )

    # How far Leezy's clock may lag ours (ChangeRead caps the watermark by it); tests narrow it.
    margin: timedelta = CLOCK_SKEW_ALLOWANCE

    def read(self, cursor: dict[str, Any] | None, context: ReadContext) -> Iterator[Page]:
        state = ChangeRead.start(cursor, context.now, self.margin)
        while True:
            response = self._http.request(
                "GET", MEETINGS_PATH, params=state.params(self._page_size, self._overlap)
            )
            data, meta = _envelope(response_json(PROVIDER, response))
            done = state.take(data, meta, self._page_size)
            records = [RawRecord(payload=item, external_id=_id_and_updated(item)[0]) for item in state.fresh]
            self._skew.observe_newest(state.high, context.now)
            state.margin = self._skew.margin(self.margin)
            yield Page(records=records, cursor=state.cursor(done))
            if done:
                if not state.proven:
                    log.info(
                        "leezy %s: records moved while the read paged by offset; since advances only "
                        "as far as the keyed part proved",
                        self.connection_id,
                    )
                return

    def normalise(self, record: RawRecord) -> SourceRecord:
        return normalise_meeting(record.payload)

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, now: datetime, *, method: str = "POST", url: str = ""
    ) -> WebhookDelivery:
        verify_signature(headers, body, self._secret, now, accept_legacy=self._accept_legacy)
        return parse_delivery(headers, body)

    def close(self) -> None:
        self._http.close()


def _envelope(body: Any) -> tuple[list[Any], Mapping[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise ProviderUnavailable(PROVIDER, "GET /api/v1/meetings answered without a 'data' list")
    meta = body.get("meta")
    return body["data"], meta if isinstance(meta, dict) else {}
