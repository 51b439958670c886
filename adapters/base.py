"""The small protocol every provider adapter fills, and the values it trades in.

An adapter knows one provider's wire format and HTTP API and nothing of our store, broker or
scheduler. The worker drives it:

* `read(cursor, context)` (a `Reader`) yields `Page`s. The worker applies each page's records
  and saves `page.cursor` in one transaction, so a crash resumes after the last stored page and
  the cursor never moves past a record that was not stored. A page with `sweep` set closes a
  *complete* read of one scope: links of that scope not in `sweep.seen` have disappeared at the
  source. `get_meeting(id)` (a `Lookup`) reads one record by its id.
* `normalise(payload)` turns one raw provider record into a `SourceRecord`, or raises
  `NormaliseError` with a reason a person can act on (the record is then quarantined).
* `parse_webhook(headers, body, now, method=, url=)` (a `WebhookReceiver`) verifies and parses
  an inbound delivery, raising `WebhookUnauthorized` (401) or `WebhookMalformed` (400). `url` is
  the full URL as received (HubSpot signs it; Meetergo carries its secret token in its query).
* Adapters that can write (`CREATE`, `CANCEL`) also fill `Writer`, and `Mover` with
  `RESCHEDULE`: they take a `BookingRequest` (the canonical meeting to mirror) and answer with
  the provider's record of the booking, normalised, so the store can link it. A slot taken
  between availability and booking raises `SlotUnavailable` after the adapter's own bounded
  retries with fresh slots. A write that left us without a usable answer raises `AnswerLost`:
  it may have taken effect. Adapters that can be asked (`FIND_BOOKING`) fill
  `Finder.find_booking(request)`, which finds the booking a lost answer would have named (by the
  reference planted, or attendee and slot).

The rest of the code asks an adapter what it can do (`capabilities`), never its provider's name,
and what a booking there can hold (`shape`, a `BookingShape`), so the planner compares a meeting
with its mirror at the precision the target keeps instead of re-booking what it cannot store.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar, Protocol, runtime_checkable

from bookingsync.adapters.settings import AdapterSettings
from bookingsync.models.meeting import Meeting, SourceRecord


class Capability(StrEnum):
    LIST_CHANGES = "list_changes"  # poll for what changed since a cursor
    LOOKUP_BY_EMAIL = "lookup_by_email"  # poll the meetings of watched attendee emails
    RECEIVE_WEBHOOKS = "receive_webhooks"
    CREATE = "create"
    RESCHEDULE = "reschedule"
    CANCEL = "cancel"
    FIND_BOOKING = "find_booking"  # a booking whose answer was lost can be found again


# JavaScript's Date, and so most JSON APIs: milliseconds.
MILLISECOND = timedelta(milliseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class BookingShape:
    """What one booking at a target can hold, declared by its adapter (`Adapter.shape`).

    `resolution`: the finest step its times keep (a start is kept floored to it);
    `durations`: the lengths it allows (None: any); `zero_length`: whether a booking may end
    where it starts. A meeting the shape cannot hold is refused with `cannot_hold`'s sentence,
    never approximated.
    """

    resolution: timedelta = MILLISECOND
    durations: frozenset[timedelta] | None = None
    zero_length: bool = True

    def held(self, start: datetime, end: datetime) -> tuple[datetime, datetime]:
        """The start and end a booking of start–end keeps there: both floored to the resolution."""
        return self._floor(start), self._floor(end)

    def _floor(self, value: datetime) -> datetime:
        return value - (value.astimezone(UTC) - _EPOCH) % self.resolution

    def cannot_hold(self, start: datetime, end: datetime) -> str | None:
        """Why a booking of start–end cannot be made there (a sentence), or None when it can."""
        first, last = self.held(start, end)
        length = last - first
        if length <= timedelta(0) and not self.zero_length:
            detail = (
                "starts and ends at the same instant"
                if end == start
                else (
                    f"lasts {(end - start).total_seconds():g} s, nothing at its resolution of {_span(self.resolution)}"
                )
            )
            return f"the meeting {detail}, and a booking there must have a length"
        if self.durations is not None and length not in self.durations:
            allowed = ", ".join(_span(d) for d in sorted(self.durations))
            return (
                f"the meeting lasts {_span(length)} (at a resolution of {_span(self.resolution)}), and a booking "
                f"there may only last {allowed}; it is not booked with another length"
            )
        return None


def _span(value: timedelta) -> str:
    seconds = value.total_seconds()
    if seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


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
class WatchHint:
    """What the store knows of a watched email's meetings: how urgent re-reading it is."""

    next_start: datetime | None = None  # the soonest start of its meetings still to come
    changed_at: datetime | None = None  # when one of its meetings last changed in the store


@dataclass(frozen=True)
class WatchSummary:
    """A watch-list schedule as `bookingsync status` shows it."""

    count: int
    staleness_seconds: float  # every email is read at least this often
    next_due_at: datetime | None


@dataclass(frozen=True)
class Page:
    records: list[RawRecord]
    cursor: dict[str, Any]
    sweep: Sweep | None = None
    watch: WatchSummary | None = None  # adapters reading a watch list say how it stands


@dataclass(frozen=True)
class ReadContext:
    now: datetime
    # Attendee emails the worker wants read (configured ones plus upcoming and recent meetings').
    watch_emails: frozenset[str] = frozenset()
    # Per watched email, what the store knows (emails missing here have no hint).
    watch_hints: Mapping[str, WatchHint] = field(default_factory=dict)
    # The connection's poll interval: a watch-list schedule spreads its reads over it.
    interval_seconds: float = 60.0


@dataclass(frozen=True)
class WebhookDelivery:
    """A verified inbound delivery. `records` is empty for event types we do not handle."""

    delivery_id: str
    event_type: str
    records: list[RawRecord] = field(default_factory=list)
    handled: bool = True


@dataclass(frozen=True)
class BookingRequest:
    """Book (or move) this meeting at the provider: exactly its start and end, for its attendee."""

    meeting: Meeting
    # The write's own reference (its intent's), stored at the provider where it has a place for
    # one, so a booking whose answer was lost can be found again instead of booked twice, and a
    # read of it is recognised as our own echo.
    reference: str
    # The provider's id of the booking this one replaces (a move made as book-new-then-cancel-old),
    # for providers that record the link (Meetergo `rescheduledFromId`); the old one is cancelled
    # by a write of its own.
    replaces: str | None = None


# -- the parts an adapter fills ----------------------------------------------------------------
#
# An adapter is the `Adapter` core plus the parts its provider documents: `Reader` (polls),
# `Lookup` (one record by id), `WebhookReceiver`, `Writer` (create and cancel), `Mover`
# (reschedule in place) and `Finder` (find a booking whose answer was lost). No adapter carries a
# method it cannot fill. Callers ask for the part they need with isinstance (the parts are
# runtime-checkable and hold only their own methods, so a test's fake writer is a Writer), which
# also narrows the type; the planner still reads `capabilities`, which
# tests/unit/test_adapter_parts.py holds to the parts each adapter fills.


class Adapter(Protocol):
    """What every adapter is: a provider's name, its settings model, what it can do, a normaliser."""

    provider: ClassVar[str]
    settings_model: ClassVar[type[AdapterSettings]]  # what a connection of it takes
    capabilities: ClassVar[frozenset[Capability]]

    # Settings as keywords, checked through `settings_model`; other keywords are test seams.
    def __init__(self, *, connection_id: str, **values: Any) -> None: ...

    def normalise(self, record: RawRecord) -> SourceRecord: ...

    def close(self) -> None: ...


@runtime_checkable
class Reader(Protocol):
    """Adapters that poll (LIST_CHANGES or LOOKUP_BY_EMAIL): pages of records from a cursor."""

    def read(self, cursor: dict[str, Any] | None, context: ReadContext) -> Iterator[Page]: ...


@runtime_checkable
class Lookup(Protocol):
    """Adapters that read one record by its id (drift repair, a fresh read before a timer)."""

    def get_meeting(self, external_id: str) -> RawRecord: ...


@runtime_checkable
class WebhookReceiver(Protocol):
    """Adapters whose provider pushes deliveries (RECEIVE_WEBHOOKS): verify and parse one."""

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, now: datetime, *, method: str = "POST", url: str = ""
    ) -> WebhookDelivery: ...


@runtime_checkable
class Writer(Protocol):
    """Adapters that book (CREATE and CANCEL). Each declares what a booking there can hold as
    `shape` (worker/precision.py reads it; one without keeps milliseconds and any length)."""

    def create(self, request: BookingRequest) -> SourceRecord: ...

    def cancel(self, external_id: str) -> None: ...


@runtime_checkable
class Mover(Writer, Protocol):
    """Writers that move a booking in place (RESCHEDULE); the others book anew and cancel."""

    def reschedule(self, external_id: str, request: BookingRequest) -> SourceRecord: ...


@runtime_checkable
class Finder(Protocol):
    """Writers with FIND_BOOKING: the booking `request` made, or None if there is none."""

    def find_booking(self, request: BookingRequest) -> SourceRecord | None: ...
