"""The small protocol every provider adapter fills, and the values it trades in.

An adapter knows one provider's wire format and HTTP API and nothing of our store, broker or
scheduler. The worker drives it:

* `read(cursor, context)` yields `Page`s. The worker applies each page's records and saves
  `page.cursor` in one transaction, so a crash resumes after the last stored page and the cursor
  never moves past a record that was not stored. A page with `sweep` set closes a *complete*
  read of one scope: links of that scope not in `sweep.seen` have disappeared at the source.
* `normalise(payload)` turns one raw provider record into a `SourceRecord`, or raises
  `NormaliseError` with a reason a person can act on (the record is then quarantined).
* `parse_webhook(headers, body, now)` verifies and parses an inbound delivery, raising
  `WebhookUnauthorized` (401) or `WebhookMalformed` (400).

The rest of the code asks an adapter what it can do (`capabilities`), never its provider's name.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Protocol

from bookingsync.models.meeting import SourceRecord


class Capability(StrEnum):
    LIST_CHANGES = "list_changes"  # poll for what changed since a cursor
    LOOKUP_BY_EMAIL = "lookup_by_email"  # poll the meetings of watched attendee emails
    LOOKUP_BY_ID = "lookup_by_id"
    RECEIVE_WEBHOOKS = "receive_webhooks"
    CREATE = "create"
    RESCHEDULE = "reschedule"
    CANCEL = "cancel"


@dataclass(frozen=True)
class RawRecord:
    """One provider record as received, before normalisation."""

    payload: Any
    external_id: str | None = None  # best effort, for quarantine listings
    scope: str | None = None


@dataclass(frozen=True)
class Sweep:
    """A complete read of `scope` (meetings starting at or after `window_start`) saw exactly `seen`."""

    scope: str
    window_start: datetime
    seen: frozenset[str]


@dataclass(frozen=True)
class Page:
    records: list[RawRecord]
    cursor: dict[str, Any]
    sweep: Sweep | None = None


@dataclass(frozen=True)
class ReadContext:
    now: datetime
    # Attendee emails the worker wants read (configured ones plus upcoming and recent meetings').
    watch_emails: frozenset[str] = frozenset()


@dataclass(frozen=True)
class WebhookDelivery:
    """A verified inbound delivery. `records` is empty for event types we do not handle."""

    delivery_id: str
    event_type: str
    records: list[RawRecord] = field(default_factory=list)
    handled: bool = True


class Adapter(Protocol):
    provider: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]]

    def read(self, cursor: dict[str, Any] | None, context: ReadContext) -> Iterator[Page]: ...

    def normalise(self, record: RawRecord) -> SourceRecord: ...

    def parse_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime) -> WebhookDelivery: ...

    def close(self) -> None: ...
