"""The JSON a consumer receives: the canonical meeting and the Standard Webhooks body around it.

Every time in an event is written one way: UTC, milliseconds, `Z` (`2027-10-31T00:30:00.000Z`),
so a consumer parses one format and two events compare as strings. `late_by` (a timer set after
its moment: a meeting first seen late) is a number of seconds, to the millisecond.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bookingsync.models.tables import EventRow, LinkRow, MeetingRow
from bookingsync.worker.lifecycle import EventIntent

# What an event says beside the meeting, kept in its outbox row until the body is built.
DETAIL_KEYS = ("previous", "changes", "conflict", "link", "late_by")


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def event_time(value: datetime | None) -> str | None:
    """The one format of times in events: UTC, milliseconds, `Z` (JavaScript's toISOString)."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # isoformat truncates to milliseconds as toISOString does, at a fraction of strftime's cost
    # (a page of events formats thousands of these); "+00:00" is its last six characters.
    return value.isoformat(timespec="milliseconds")[:-6] + "Z"


def meeting_json(row: MeetingRow, links: list[LinkRow]) -> dict[str, Any]:
    return {
        "id": row.id,
        "status": row.status,
        "title": row.title,
        "start": event_time(row.start),
        "end": event_time(row.end),
        "timezone": row.timezone,
        "attendee": {"email": row.attendee_email, "name": row.attendee_name, "phone": row.attendee_phone},
        "hosts": list(row.hosts or []),
        "conference_url": row.conference_url,
        "links": [
            {"connection": link.connection, "provider": link.provider, "external_id": link.external_id}
            for link in sorted(links, key=lambda item: (item.connection, item.external_id))
        ],
    }


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return event_time(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def intent_details(intent: EventIntent) -> dict[str, Any]:
    """`previous` {start, end} of a move and `changes` {field: {old, new}}, as JSON."""
    details: dict[str, Any] = {}
    if intent.previous is not None:
        details["previous"] = {"start": event_time(intent.previous[0]), "end": event_time(intent.previous[1])}
    if intent.changes:
        details["changes"] = {
            change.field: {"old": _json_value(change.old), "new": _json_value(change.new)}
            for change in intent.changes
        }
    if intent.late_by is not None:
        details["late_by"] = round(intent.late_by.total_seconds(), 3)
    return details


def event_body(event: EventRow, meeting: dict[str, Any]) -> dict[str, Any]:
    """The body delivered for `event`; fixed once built, so every retry sends the same bytes."""
    data = {
        "event_id": event.event_id,
        "sequence": event.sequence,
        "occurred_at": event_time(event.occurred_at),
        "meeting": meeting,
    }
    stored = event.payload or {}
    data.update({key: stored[key] for key in DETAIL_KEYS if key in stored})
    return {"type": event.type, "timestamp": event_time(event.occurred_at), "data": data}
