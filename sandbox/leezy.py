"""Leezy simulator: meetings list API, webhook subscriptions and deliveries, in memory.

Written only from Leezy.ai's API documentation: the Meetings API page
(https://staging.leezy.ai/docs/api/meetings), the API overview and the webhook pages
(https://leezy.ai/docs/api/webhooks).

Provider surface (``create_app``):

* ``GET /api/v1/meetings`` (scope ``meetings:read``) with ``limit`` (default 20, 1..100),
  ``offset`` (default 0), ``since``, ``status``, ``chatbot_id``, ``upcoming``; the documented
  ``{"data": [...], "meta": {api_version, total, limit, offset, has_more, count}}`` envelope.
* ``POST /api/v1/webhooks/subscribe``, ``GET /api/v1/webhooks``, ``GET|DELETE
  /api/v1/webhooks/{id}`` (scope ``webhooks:manage``); deliveries in `leezy_webhooks`.
* Errors use ``{"error": <code>, "error_description": <sentence>}``: 400 ``invalid_request``,
  401 ``unauthorized``, 403 ``insufficient_scope``, 404 ``not_found``, 429
  ``rate_limit_exceeded`` (the documented body), 500 ``server_error``.

Ambiguities, and how they are resolved:

* Order of the list is not documented. The simulator sorts by ``updated_at`` then ``id``: a
  record updated while a client pages moves to the end of the list and shifts every later record
  one place towards the front, so an offset-paging client skips one unless it re-reads. This is
  the adversarial order on purpose.
* ``since`` means "updated after": strictly greater than. Without an offset it is read as UTC.
* ``upcoming=true`` keeps meetings whose ``start_time`` is after now (a meeting under way is not
  "future"). Only ``true``/``false`` (any case) are accepted.
* ``total`` counts every record matching the filters; ``has_more`` is ``offset + count < total``.
* Timestamps are ISO 8601 in UTC with ``Z``; microseconds are kept when present, so tests can
  build records whose ``updated_at`` differ by less than a second, or tie exactly.
* The 429 body is the documented one. The docs mention no ``Retry-After`` header: it is off by
  default and can be switched on (``retry_after_header``) or set per injected fault.
* Reschedules: the docs name no event. The simulator re-sends ``meeting.scheduled`` carrying the
  new times. ``cancel`` sends ``meeting.cancelled``, ``complete`` sends ``meeting.completed``.
* Subscribe answers 201 (RestHooks convention, the docs give no status); DELETE answers 204.
* A ``malformed`` fault appends one extra record to the page (``variant``: ``bad_start_time``
  (default) makes ``start_time`` ``"not-a-date"``, ``missing_attendee`` drops ``attendee``); it
  counts in ``count`` and ``total`` like any record the provider would send.

Control API (JSON, no auth) for tests and demos running the sandbox out of process: see
`leezy_control`.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from bookingsync.sandbox.answer_faults import install_answer_faults
from bookingsync.sandbox.clock import aware, utc_now
from bookingsync.sandbox.errors import UnknownMeetingError
from bookingsync.sandbox.faults import Fault, FaultQueue
from bookingsync.sandbox.leezy_webhooks import (
    SIGNATURE_PRODUCTION,
    DeliveryAttempt,
    WebhookSender,
    build_signed_delivery,
    new_event,
)
from bookingsync.sandbox.request_log import RequestLog, install_request_log

API_VERSION = "2024-01-01"
MEETINGS_PATH = "/api/v1/meetings"
DEFAULT_TOKEN = "lzy_at_sandbox"
SCOPE_MEETINGS = "meetings:read"
SCOPE_WEBHOOKS = "webhooks:manage"
DEFAULT_CHATBOT_ID = "chatbot_sandbox"
DEFAULT_ORGANIZATION_ID = "org_sandbox"
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
RATE_LIMIT_DESCRIPTION = "Too many requests. Please retry after 60 seconds."
RATE_LIMIT_RETRY_AFTER_SECONDS = 60  # the number the documented 429 message names

# The production event list; subscribe rejects anything else.
EVENT_TYPES = frozenset(
    "lead.created lead.updated lead.qualified lead.converted lead.score_changed "
    "conversation.started conversation.ended conversation.message_received "
    "conversation.sentiment_negative conversation.sentiment_positive message.feedback_negative "
    "message.feedback_positive ticket.created ticket.updated ticket.resolved meeting.scheduled "
    "meeting.cancelled meeting.completed meeting.reminder agent.tool_executed agent.tool_failed "
    "usage.threshold_reached".split()
)
STATUS_EVENTS = {
    "scheduled": "meeting.scheduled",
    "cancelled": "meeting.cancelled",
    "completed": "meeting.completed",
}
MALFORMED_VARIANTS = ("bad_start_time", "missing_attendee")
UPDATABLE_FIELDS = frozenset(
    "chatbot_id conversation_id title description start_time end_time timezone attendee_name "
    "attendee_email attendee_phone status meeting_url meeting_provider cancelled_at "
    "cancelled_reason".split()
)


def format_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    value = value.astimezone(UTC)
    pattern = "%Y-%m-%dT%H:%M:%S.%fZ" if value.microsecond else "%Y-%m-%dT%H:%M:%SZ"
    return value.strftime(pattern)


def parse_time(text: str) -> datetime:
    """ISO 8601; a value without an offset is taken as UTC."""
    return aware(datetime.fromisoformat(text))


@dataclass(frozen=True)
class LeezyMeeting:
    id: str
    chatbot_id: str
    conversation_id: str
    title: str
    description: str
    start_time: datetime
    end_time: datetime
    timezone: str
    attendee_name: str | None
    attendee_email: str
    attendee_phone: str | None
    status: str
    meeting_url: str
    meeting_provider: str
    cancelled_at: datetime | None
    cancelled_reason: str | None
    created_at: datetime
    updated_at: datetime

    def resource(self) -> dict[str, Any]:
        """The wire shape of one meeting, as in the documented list response."""
        return {
            "id": self.id,
            "type": "meeting",
            "attributes": {
                "chatbot_id": self.chatbot_id,
                "conversation_id": self.conversation_id,
                "title": self.title,
                "description": self.description,
                "start_time": format_time(self.start_time),
                "end_time": format_time(self.end_time),
                "timezone": self.timezone,
                "attendee": {
                    "name": self.attendee_name,
                    "email": self.attendee_email,
                    "phone": self.attendee_phone,
                },
                "status": self.status,
                "meeting_url": self.meeting_url,
                "meeting_provider": self.meeting_provider,
                "cancelled_at": format_time(self.cancelled_at),
                "cancelled_reason": self.cancelled_reason,
                "created_at": format_time(self.created_at),
                "updated_at": format_time(self.updated_at),
            },
        }


@dataclass
class Subscription:
    id: str
    target_url: str
    event_types: list[str]
    filters: dict[str, Any]
    secret: str
    created_at: datetime
    updated_at: datetime
    status: str = "active"
    failure_count: int = 0

    def public(self, *, with_secret: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "target_url": self.target_url,
            "event_types": list(self.event_types),
            "filters": dict(self.filters),
            "status": self.status,
            "created_at": format_time(self.created_at),
        }
        if with_secret:
            data["secret"] = self.secret
        else:
            data |= {"failure_count": self.failure_count, "updated_at": format_time(self.updated_at)}
        return data


@dataclass(frozen=True)
class MeetingFilters:
    since: datetime | None = None
    status: str | None = None
    chatbot_id: str | None = None
    upcoming: bool = False


class LeezyState:
    """Everything the simulator holds; every method is safe to call from any thread."""

    def __init__(
        self,
        *,
        now: Callable[[], datetime] | None = None,
        tokens: dict[str, Iterable[str]] | None = None,
        organization_id: str = DEFAULT_ORGANIZATION_ID,
        rate_limit_per_minute: int | None = None,
        retry_after_header: bool = False,
        signature_variant: str = SIGNATURE_PRODUCTION,
    ) -> None:
        self._real_now = now or utc_now
        # Leezy's own clock runs this far from the real one (negative: behind). It stamps
        # `updated_at`, answers `since`, and is what every answer's `Date` header says.
        self.clock_offset_seconds = 0.0
        self.organization_id = organization_id
        self.rate_limit_per_minute = rate_limit_per_minute
        self.retry_after_header = retry_after_header
        self.signature_variant = signature_variant
        self.next_webhook_secret: str | None = None  # the secret the next subscription gets
        self.timestamp_offset_seconds = 0  # skews X-Leezy-Timestamp, to test replay windows
        self.faults = FaultQueue()
        self.requests = RequestLog()
        self._lock = threading.RLock()
        self._tokens = {
            t: frozenset(s) for t, s in (tokens or {DEFAULT_TOKEN: (SCOPE_MEETINGS, SCOPE_WEBHOOKS)}).items()
        }
        self._meetings: dict[str, LeezyMeeting] = {}
        self._subscriptions: dict[str, Subscription] = {}
        self._windows: dict[str, tuple[datetime, int]] = {}
        self._sender = WebhookSender(on_result=self._delivery_result)

    # -- credentials and rate limit ---------------------------------------------------------

    def now(self) -> datetime:
        """The simulated Leezy's clock: the real (or injected) one plus `clock_offset_seconds`."""
        return self._real_now() + timedelta(seconds=self.clock_offset_seconds)

    def add_token(self, token: str, scopes: Iterable[str]) -> None:
        with self._lock:
            self._tokens[token] = frozenset(scopes)

    def scopes_for(self, token: str) -> frozenset[str] | None:
        with self._lock:
            return self._tokens.get(token)

    def allow_request(self, token: str) -> bool:
        """Count one request against the token's per-minute budget (fixed one-minute windows)."""
        with self._lock:
            if self.rate_limit_per_minute is None:
                return True
            window = self.now().astimezone(UTC).replace(second=0, microsecond=0)
            start, used = self._windows.get(token, (window, 0))
            if start != window:
                used = 0
            self._windows[token] = (window, used + 1)
            return used < self.rate_limit_per_minute

    # -- meetings ---------------------------------------------------------------------------

    def book(
        self,
        title: str,
        start: datetime,
        end: datetime,
        timezone: str,
        attendee_email: str,
        attendee_name: str | None = None,
        phone: str | None = None,
        status: str = "scheduled",
        chatbot_id: str = DEFAULT_CHATBOT_ID,
        updated_at: datetime | None = None,
        description: str = "",
        meeting_provider: str = "google_meet",
    ) -> str:
        with self._lock:
            stamp = aware(updated_at or self.now())
            start, end = aware(start), aware(end)
            meeting_id = f"meeting_{secrets.token_hex(6)}"
            room = secrets.token_hex(5)
            meeting = LeezyMeeting(
                id=meeting_id,
                chatbot_id=chatbot_id,
                conversation_id=f"conv_{secrets.token_hex(6)}",
                title=title,
                description=description,
                start_time=start,
                end_time=end,
                timezone=timezone,
                attendee_name=attendee_name,
                attendee_email=attendee_email,
                attendee_phone=phone,
                status=status,
                meeting_url=f"https://meet.google.com/{room[:3]}-{room[3:7]}-{room[7:]}",
                meeting_provider=meeting_provider,
                cancelled_at=stamp if status == "cancelled" else None,
                cancelled_reason=None,
                created_at=stamp,
                updated_at=stamp,
            )
            self._meetings[meeting_id] = meeting
            # A booking made straight as "confirmed" is still a booking: meeting.scheduled.
            event = "meeting.scheduled" if status == "confirmed" else STATUS_EVENTS.get(status)
            if event is not None:
                self._emit(event, meeting)
            return meeting_id

    def reschedule(
        self, meeting_id: str, start: datetime, end: datetime, updated_at: datetime | None = None
    ) -> None:
        with self._lock:
            meeting = self._change(meeting_id, updated_at, start_time=aware(start), end_time=aware(end))
            self._emit("meeting.scheduled", meeting)

    def cancel(self, meeting_id: str, reason: str | None = None, updated_at: datetime | None = None) -> None:
        with self._lock:
            stamp = aware(updated_at or self.now())
            meeting = self._change(
                meeting_id, stamp, status="cancelled", cancelled_at=stamp, cancelled_reason=reason
            )
            self._emit("meeting.cancelled", meeting)

    def complete(self, meeting_id: str, updated_at: datetime | None = None) -> None:
        with self._lock:
            meeting = self._change(meeting_id, updated_at, status="completed")
            self._emit("meeting.completed", meeting)

    def update(self, meeting_id: str, *, updated_at: datetime | None = None, **fields: Any) -> None:
        """Change any stored field; a status change to scheduled/cancelled/completed notifies."""
        unknown = set(fields) - UPDATABLE_FIELDS
        if unknown:
            raise TypeError(
                f"Leezy meetings have no field(s) {sorted(unknown)}; updatable: {sorted(UPDATABLE_FIELDS)}."
            )
        fields = {k: aware(v) if isinstance(v, datetime) else v for k, v in fields.items()}
        with self._lock:
            before = self.get(meeting_id)
            meeting = self._change(meeting_id, updated_at, **fields)
            if meeting.status != before.status and meeting.status in STATUS_EVENTS:
                self._emit(STATUS_EVENTS[meeting.status], meeting)

    def get(self, meeting_id: str) -> LeezyMeeting:
        with self._lock:
            try:
                return self._meetings[meeting_id]
            except KeyError:
                raise UnknownMeetingError(meeting_id) from None

    def meetings(self) -> list[LeezyMeeting]:
        """Every meeting, in list-API order."""
        with self._lock:
            return sorted(self._meetings.values(), key=lambda m: (m.updated_at, m.id))

    def list_page(self, filters: MeetingFilters, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        """One page of resources and the number of records matching `filters`."""
        with self._lock:
            now = self.now()
            matching = [
                m
                for m in self.meetings()
                if (filters.since is None or m.updated_at > filters.since)
                and (filters.status is None or m.status == filters.status)
                and (filters.chatbot_id is None or m.chatbot_id == filters.chatbot_id)
                and (not filters.upcoming or m.start_time > now)
            ]
            return [m.resource() for m in matching[offset : offset + limit]], len(matching)

    def _change(self, meeting_id: str, updated_at: datetime | None, **fields: Any) -> LeezyMeeting:
        meeting = replace(self.get(meeting_id), updated_at=aware(updated_at or self.now()), **fields)
        self._meetings[meeting_id] = meeting
        return meeting

    # -- faults -----------------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        self.faults.add(fault)

    def after_page(self, offset: int, action: Callable[[], None]) -> None:
        """Run `action` once the next listing at `offset` is computed, before it is sent."""
        self.faults.add(Fault(kind="mutate", offset=offset, action=action, path=MEETINGS_PATH))

    # -- webhooks ---------------------------------------------------------------------------

    def subscribe(
        self,
        target_url: str,
        event_types: Iterable[str],
        filters: dict[str, Any] | None = None,
        secret: str | None = None,
    ) -> Subscription:
        with self._lock:
            stamp = self.now()
            chosen = secret or self.next_webhook_secret or f"lzy_ws_{secrets.token_hex(16)}"
            subscription = Subscription(
                id=f"webhook_{secrets.token_hex(6)}",
                target_url=target_url,
                event_types=list(event_types),
                filters=dict(filters or {}),
                secret=chosen,
                created_at=stamp,
                updated_at=stamp,
            )
            self._subscriptions[subscription.id] = subscription
            return subscription

    def subscriptions(self) -> list[Subscription]:
        with self._lock:
            return list(self._subscriptions.values())

    def subscription(self, subscription_id: str) -> Subscription | None:
        with self._lock:
            return self._subscriptions.get(subscription_id)

    def unsubscribe(self, subscription_id: str) -> bool:
        with self._lock:
            return self._subscriptions.pop(subscription_id, None) is not None

    def deliveries(self) -> list[DeliveryAttempt]:
        return self._sender.attempts()

    def flush_deliveries(self, timeout: float = 10.0) -> bool:
        return self._sender.flush(timeout)

    def close(self) -> None:
        self._sender.close()

    def _emit(self, event_type: str, meeting: LeezyMeeting) -> None:
        stamp = self.now()
        event = new_event(
            event_type,
            created_at=format_time(stamp) or "",
            organization_id=self.organization_id,
            chatbot_id=meeting.chatbot_id,
            data=meeting.resource(),
        )
        for sub in self._subscriptions.values():
            wanted = sub.filters.get("chatbot_id")
            if sub.status != "active" or event_type not in sub.event_types:
                continue
            if wanted and wanted != meeting.chatbot_id:
                continue
            delivery = build_signed_delivery(
                sub.secret,
                event,
                timestamp=int(stamp.timestamp()) + self.timestamp_offset_seconds,
                variant=self.signature_variant,
            )
            self._sender.send(sub.id, sub.target_url, event, delivery)

    def _delivery_result(self, attempt: DeliveryAttempt) -> None:
        with self._lock:
            sub = self._subscriptions.get(attempt.subscription_id)
            if sub is not None and not attempt.succeeded:
                sub.failure_count += 1
                sub.updated_at = self.now()


# -- HTTP ---------------------------------------------------------------------------------------


def _error(status: int, code: str, description: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "error_description": description}, status, headers=headers)


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def _parse_int(params: Any, name: str, default: int, low: int, high: int | None) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise _Refused(
            _error(400, "invalid_request", f"The {name} parameter must be an integer {bound}; got {raw!r}.")
        )
    return value


def _parse_filters(params: Any) -> MeetingFilters:
    since = None
    if (raw := params.get("since")) is not None:
        try:
            since = parse_time(raw)
        except ValueError:
            raise _Refused(
                _error(
                    400, "invalid_request", f"The since parameter must be an ISO 8601 timestamp; got {raw!r}."
                )
            ) from None
    upcoming = (params.get("upcoming") or "false").lower()
    if upcoming not in ("true", "false"):
        raise _Refused(_error(400, "invalid_request", "The upcoming parameter must be true or false."))
    return MeetingFilters(
        since=since,
        status=params.get("status"),
        chatbot_id=params.get("chatbot_id"),
        upcoming=upcoming == "true",
    )


def _malformed(state: LeezyState, variant: str | None) -> dict[str, Any]:
    stamp = state.now()
    record = LeezyMeeting(
        id=f"meeting_malformed_{secrets.token_hex(4)}",
        chatbot_id=DEFAULT_CHATBOT_ID,
        conversation_id="conv_malformed",
        title="Malformed record",
        description="",
        start_time=stamp,
        end_time=stamp,
        timezone="UTC",
        attendee_name=None,
        attendee_email="broken@example.com",
        attendee_phone=None,
        status="scheduled",
        meeting_url="",
        meeting_provider="custom",
        cancelled_at=None,
        cancelled_reason=None,
        created_at=stamp,
        updated_at=stamp,
    ).resource()
    if (variant or "bad_start_time") == "missing_attendee":
        del record["attributes"]["attendee"]
    else:
        record["attributes"]["start_time"] = "not-a-date"
    return record


def _fault_response(fault: Fault) -> Response | None:
    if fault.kind == "429":
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        return _error(429, "rate_limit_exceeded", RATE_LIMIT_DESCRIPTION, headers)
    if fault.kind == "500":
        return _error(500, "server_error", "The sandbox injected a server error.")
    return None


def _authorize(state: LeezyState, request: Request, scope: str) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    scopes = state.scopes_for(token.strip()) if scheme.lower() == "bearer" else None
    if scopes is None:
        raise _Refused(
            _error(
                401, "unauthorized", "Missing or invalid access token; send Authorization: Bearer <token>."
            )
        )
    if scope not in scopes:
        raise _Refused(_error(403, "insufficient_scope", f"This access token lacks the {scope} scope."))
    if not state.allow_request(token.strip()):
        headers = {"Retry-After": str(RATE_LIMIT_RETRY_AFTER_SECONDS)} if state.retry_after_header else None
        raise _Refused(_error(429, "rate_limit_exceeded", RATE_LIMIT_DESCRIPTION, headers))
    return token


async def _before(state: LeezyState, request: Request, scope: str, *, listing: bool = False) -> Fault | None:
    """Authorize, then apply an injected fault; returns a fault the listing must still honour."""
    _authorize(state, request, scope)
    fault = state.faults.take_before(request.method, request.url.path, listing=listing)
    if fault is None:
        return None
    if fault.kind == "delay":
        await asyncio.sleep(fault.seconds)
        return None
    if (response := _fault_response(fault)) is not None:
        raise _Refused(response)
    return fault


def create_app(state: LeezyState) -> FastAPI:
    # Imported here because the control module builds on this one's state and formats.
    from bookingsync.sandbox.leezy_control import control_router

    app = FastAPI(title="Leezy sandbox", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.date_header = True  # the sandbox server leaves `Date` to us: it is this Leezy's clock
    install_request_log(app, state.requests, state.now)

    @app.middleware("http")
    async def date_header(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        response.headers["Date"] = format_datetime(state.now().astimezone(UTC), usegmt=True)
        return response

    install_answer_faults(app, state.faults)
    app.include_router(control_router(state))

    @app.exception_handler(_Refused)
    async def refused(_request: Request, exc: _Refused) -> Response:
        return exc.response

    @app.get(MEETINGS_PATH)
    async def list_meetings(request: Request) -> Response:
        fault = await _before(state, request, SCOPE_MEETINGS, listing=True)
        params = request.query_params
        limit = _parse_int(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = _parse_int(params, "offset", 0, 0, None)
        filters = _parse_filters(params)
        data, total = state.list_page(filters, limit, offset)
        for mutation in state.faults.take_after_page(request.method, request.url.path, offset):
            assert mutation.action is not None  # Fault refuses a mutate without one
            mutation.action()
        if fault is not None and fault.kind == "malformed":
            data.append(_malformed(state, fault.variant))
            total += 1
        meta = {
            "api_version": API_VERSION,
            "total": total,
            "limit": limit,
            "offset": offset,
            "has_more": offset + len(data) < total,
            "count": len(data),
        }
        return JSONResponse({"data": data, "meta": meta})

    @app.post("/api/v1/webhooks/subscribe")
    async def subscribe(request: Request) -> Response:
        await _before(state, request, SCOPE_WEBHOOKS)
        try:
            body = await request.json()
        except ValueError:
            body = None
        problem = _subscription_problem(body)
        if problem:
            return _error(400, "invalid_request", problem)
        sub = state.subscribe(body["target_url"], body["event_types"], body.get("filters"))
        return JSONResponse({"data": sub.public(with_secret=True), "meta": {"api_version": API_VERSION}}, 201)

    @app.get("/api/v1/webhooks")
    async def list_webhooks(request: Request) -> Response:
        await _before(state, request, SCOPE_WEBHOOKS)
        subs = [s.public() for s in state.subscriptions()]
        return JSONResponse(
            {"data": subs, "meta": {"api_version": API_VERSION, "total": len(subs), "count": len(subs)}}
        )

    @app.get("/api/v1/webhooks/{subscription_id}")
    async def get_webhook(subscription_id: str, request: Request) -> Response:
        await _before(state, request, SCOPE_WEBHOOKS)
        sub = state.subscription(subscription_id)
        if sub is None:
            return _error(404, "not_found", f"No webhook subscription {subscription_id!r}.")
        return JSONResponse({"data": sub.public(), "meta": {"api_version": API_VERSION}})

    @app.delete("/api/v1/webhooks/{subscription_id}")
    async def delete_webhook(subscription_id: str, request: Request) -> Response:
        await _before(state, request, SCOPE_WEBHOOKS)
        if not state.unsubscribe(subscription_id):
            return _error(404, "not_found", f"No webhook subscription {subscription_id!r}.")
        return Response(status_code=204)

    return app


def _subscription_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    url = body.get("target_url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return "target_url must be an http(s) URL."
    types = body.get("event_types")
    if not isinstance(types, list) or not types:
        return "event_types must be a non-empty list of event types."
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        return f"Unknown event type(s): {', '.join(map(str, unknown))}."
    if not isinstance(body.get("filters", {}), dict):
        return "filters must be an object."
    return None
