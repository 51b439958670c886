"""The JSON a consumer receives: the canonical meeting and the Standard Webhooks body around it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bookingsync.models.tables import EventRow, LinkRow, MeetingRow
from bookingsync.worker.lifecycle import EventIntent

# What an event says beside the meeting, kept in its outbox row until the body is built.
DETAIL_KEYS = ("previous", "changes", "conflict", "link")


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def meeting_json(row: MeetingRow, links: list[LinkRow]) -> dict[str, Any]:
    return {
        "id": row.id,
        "status": row.status,
        "title": row.title,
        "start": iso(row.start),
        "end": iso(row.end),
        "timezone": row.timezone,
        "attendee": {"email": row.attendee_email, "name": row.attendee_name, "phone": row.attendee_phone},
        "hosts": list(row.hosts or []),
        "conference_url": row.conference_url,
        "links": [{"connection": link.connection, "provider": link.provider, "external_id": link.external_id}
                  for link in sorted(links, key=lambda item: (item.connection, item.external_id))],
    }


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def intent_details(intent: EventIntent) -> dict[str, Any]:
    """`previous` {start, end} of a move and `changes` {field: {old, new}}, as JSON."""
    details: dict[str, Any] = {}
    if intent.previous is not None:
        details["previous"] = {"start": iso(intent.previous[0]), "end": iso(intent.previous[1])}
    if intent.changes:
        details["changes"] = {change.field: {"old": _json_value(change.old), "new": _json_value(change.new)}
                              for change in intent.changes}
    return details


def event_body(event: EventRow, meeting: dict[str, Any]) -> dict[str, Any]:
    """The body delivered for `event`; fixed once built, so every retry sends the same bytes."""
    data = {
        "event_id": event.event_id,
        "sequence": event.sequence,
        "occurred_at": iso(event.occurred_at),
        "meeting": meeting,
    }
    stored = event.payload or {}
    data.update({key: stored[key] for key in DETAIL_KEYS if key in stored})
    return {"type": event.type, "timestamp": iso(event.occurred_at), "data": data}
