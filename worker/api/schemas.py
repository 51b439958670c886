"""The shapes the HTTP API answers with: what its OpenAPI document promises, field by field."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, Field


class ErrorOut(BaseModel):
    error: str = Field(description="What is wrong, and what to do about it.")


class BodyErrorOut(BaseModel):
    detail: str = Field(description="Why the request body could not be read (not JSON, say).")


class AttendeeOut(BaseModel):
    email: str | None
    name: str | None
    phone: str | None


class LinkOut(BaseModel):
    connection: str
    provider: str
    external_id: str


class MeetingOut(BaseModel):
    """The canonical meeting, as webhook bodies carry it."""

    id: str
    status: str
    title: str | None
    start: str
    end: str
    timezone: str | None
    attendee: AttendeeOut
    hosts: list[str]
    conference_url: str | None
    links: list[LinkOut]


class LinkDetailOut(LinkOut):
    missing: bool = Field(description="Gone from a complete read of its provider, or cancelled there by us.")
    mirrored: bool = Field(description="Booked there by bookingsync through a route.")
    start: datetime | None
    end: datetime | None
    first_seen_at: datetime
    last_seen_at: datetime


class MeetingPage(BaseModel):
    meetings: list[MeetingOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class EventOut(BaseModel):
    event_id: str
    type: str
    meeting_id: str
    status: str = Field(description="pending (timers wait here) → leased → published; or cancelled / dropped")
    sequence: int | None
    position: int | None = Field(description="Its place in the event feed, once published.")
    occurred_at: datetime
    due_at: datetime
    published_at: datetime | None
    body: dict[str, Any] | None = Field(description="The body delivered to subscribers, once it is built.")


class DeliveryOut(BaseModel):
    id: int
    event_id: str
    subscription_id: str
    status: str = Field(
        description="pending → leased → succeeded; or dead, or skipped (subscription disabled)"
    )
    attempts: int
    due_at: datetime
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None


class MeetingDetail(BaseModel):
    meeting: MeetingOut
    booked: bool = Field(description="`meeting.booked` was emitted for it.")
    deleted: bool
    version: int
    created_at: datetime
    updated_at: datetime
    links: list[LinkDetailOut]
    events: list[EventOut]
    deliveries: list[DeliveryOut]


class FeedEvent(BaseModel):
    """A published event: the webhook body, with its place in the feed."""

    position: int
    type: str
    timestamp: str
    data: dict[str, Any]


class FeedPage(BaseModel):
    events: list[FeedEvent]
    next_cursor: int = Field(
        description="Pass as `after` for the next read; equals `after` when nothing is new."
    )
    has_more: bool = Field(description="More events are there already: read again at once.")


class EventDetail(BaseModel):
    event: EventOut
    deliveries: list[DeliveryOut]


class DeliveryPage(BaseModel):
    deliveries: list[DeliveryOut]
    next_before: int | None = Field(
        description="Pass as `before` for older deliveries; null on the last page."
    )


class SubscriptionOut(BaseModel):
    id: str
    url: str
    events: list[str]
    enabled: bool
    disabled_at: datetime | None
    disabled_reason: str | None
    backlog: dict[str, int] = Field(description="Deliveries pending, leased, dead and skipped, by status.")
    oldest_pending_due_at: datetime | None


class EnabledOut(BaseModel):
    subscription_id: str
    was_disabled: bool
    redelivered: int = Field(
        description="Deliveries queued again: skipped ones and events published meanwhile."
    )


class ReplaySince(BaseModel):
    since: AwareDatetime = Field(description="Every event published at or after this instant is sent again.")


class ReplayedOut(BaseModel):
    subscription_id: str
    queued: int


class QuarantineOut(BaseModel):
    id: int
    connection: str
    source: str
    external_id: str | None
    scope: str | None
    reason: str
    status: str = Field(description="open | replayed | superseded")
    seen_count: int
    created_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    raw: Any = Field(description="The provider's record as it was received.")


class QuarantinePage(BaseModel):
    items: list[QuarantineOut]
    next_before: int | None


class QuarantineReplayOut(BaseModel):
    item: QuarantineOut
    outcome: str = Field(description="What the replay did, as a sentence.")


class ConnectionOut(BaseModel):
    id: str
    provider: str
    enabled: bool
    poll_interval_seconds: float
    polled: bool = Field(description="Read by polling (a write-only provider is not).")
    cursor: Any = Field(description="The provider read position saved with the last stored page.")
    last_poll_at: datetime | None
    lag_seconds: float | None = Field(description="Seconds since a read last stored a page.")
    next_poll_due_at: datetime | None
    polling_now: str | None = Field(description="The process reading it right now, if any.")
    last_webhook_at: datetime | None
    receipts: dict[str, int] = Field(
        description="Webhook receipts by status: received, leased and failed ones whatever their age; "
        "done and ignored ones received in the last hour."
    )
    open_quarantine: int
    last_error: str | None
