"""Leezy's wire records and constants: a meeting and a webhook subscription as the API writes
them, the paths, scopes, limits and event names, and the one time format."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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
