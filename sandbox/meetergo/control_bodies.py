"""The JSON bodies the meetergo control routes (`control`) accept, and the settings they may change."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bookingsync.sandbox.control import ControlBody

from .records import DEFAULT_USER_ID, MEETING_TYPE_ID
from .webhooks import BOOKING_CANCELLED, BOOKING_CREATED, BOOKING_RESCHEDULED

SETTINGS = (
    "payload_shape",
    "duplicate_deliveries",
    "booking_type_style",
    "reschedule_cancels_old",
    "hide_cancelled",
    "calendar_sync_lag_seconds",
    "reject_unknown_fields",
    "rate_limit_enabled",
    "rate_limit_per_minute",
    "rate_limit_burst",
    "retry_after_header",
)


class BookBody(ControlBody):
    start: datetime
    attendee_email: str
    attendee_name: str | None = None
    meeting_type_id: str = MEETING_TYPE_ID
    duration: int | None = None
    end: datetime | None = None
    host_ids: list[str] = []
    phone: str | None = None
    timezone: str | None = None
    channel: str | None = None
    location: str | None = None
    title: str | None = None
    check_availability: bool = False


class RescheduleBody(ControlBody):
    start: datetime
    duration: int | None = None
    end: datetime | None = None
    new_id: bool = True
    check_availability: bool = False


class CancelBody(ControlBody):
    reason: str | None = None
    action_source: str = "host"
    action_by: str | None = None


class MeetingTypeBody(ControlBody):
    id: str
    name: str
    slug: str | None = None
    duration: int = 30
    host_ids: list[str] = [DEFAULT_USER_ID]
    allowed_durations: list[int] = []
    queue_id: str | None = None
    double_opt_in: bool = False
    requires_host_confirmation: bool = False
    channel: str = "zoom"
    timezone: str = "Europe/Berlin"
    metadata: dict[str, Any] = {}


class BusyBody(ControlBody):
    host_id: str
    start: datetime
    end: datetime


class TokenBody(ControlBody):
    token: str
    user_id: str = DEFAULT_USER_ID


class ApiKeyBody(ControlBody):
    key: str | None = None
    expires_at: datetime | None = None


class WebhookBody(ControlBody):
    endpoint: str
    event_types: list[str] = [BOOKING_CREATED, BOOKING_CANCELLED, BOOKING_RESCHEDULED]
    description: str | None = None


class EmitBody(ControlBody):
    webhook_type: str
    data: dict[str, Any] = {}


class SettingsBody(ControlBody):
    payload_shape: str | None = None
    duplicate_deliveries: bool | None = None
    booking_type_style: str | None = None
    reschedule_cancels_old: bool | None = None
    hide_cancelled: bool | None = None
    calendar_sync_lag_seconds: float | None = None
    reject_unknown_fields: bool | None = None
    rate_limit_enabled: bool | None = None
    rate_limit_per_minute: int | None = None
    rate_limit_burst: int | None = None
    retry_after_header: bool | None = None
