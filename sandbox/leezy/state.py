"""The Leezy simulator's state: meetings and webhook subscriptions in memory, the wire constants
and the time format they are written in. Deliveries go out through `webhooks`."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bookingsync.sandbox.background import Deliveries
from bookingsync.sandbox.clock import aware, utc_now
from bookingsync.sandbox.errors import UnknownMeetingError
from bookingsync.sandbox.faults import Fault, FaultQueue
from bookingsync.sandbox.request_log import RequestLog

from .records import (
    DEFAULT_CHATBOT_ID,
    DEFAULT_ORGANIZATION_ID,
    DEFAULT_TOKEN,
    MEETINGS_PATH,
    SCOPE_MEETINGS,
    SCOPE_WEBHOOKS,
    STATUS_EVENTS,
    UPDATABLE_FIELDS,
    LeezyMeeting,
    MeetingFilters,
    Subscription,
    format_time,
)
from .webhooks import (
    SIGNATURE_PRODUCTION,
    DeliveryAttempt,
    WebhookSender,
    build_signed_delivery,
    new_event,
)


class LeezyState(Deliveries):
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
        self._sender: WebhookSender = WebhookSender(on_result=self._delivery_result)

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
