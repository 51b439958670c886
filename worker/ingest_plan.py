"""What a page of records does to the store, decided without touching it: the pure half of ingest.

`plan_page` takes what the store holds for a page (its links and their meetings, loaded in one
go by `worker/ingest_store.py`) and the page's normalised records, applies the records one after
another to that in-memory state with the lifecycle rules (`lifecycle.decide`), and returns the
rows to write: meetings and links to insert or update, events to insert, meetings whose stored
timers to cancel. The store then writes them with a handful of bulk statements.

Rules it keeps, beside `decide`'s:

* Never backwards (issue 13). A link keeps the ordering key of the snapshot applied through it:
  the provider's own `updated_at` where the record has one, else (a webhook record) the receipt
  time of its delivery. A snapshot whose key is older than the stored one, compared like with
  like, is counted on the link (`stale_count`) and ignored; an equal or missing key applies (the
  provider gave nothing to order by). Mirrors (links bookingsync made) only observe, so the rule
  is not applied to them.
* Causal sequence. An event due now gets its meeting's next `sequence` here, in the transaction
  that holds the meeting row, so numbers follow commit order; a timer gets its number when it
  fires (worker/relay.py).
* One page may name one booking twice, or a booking and the one it supersedes: the records are
  applied in order to the same state, so the second sees what the first did.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from bookingsync.models.meeting import Meeting, MeetingStatus, Person, SourceRecord
from bookingsync.worker.lifecycle import Backfill, EventIntent, MeetingState, decide
from bookingsync.worker.payloads import intent_details, meeting_json

if TYPE_CHECKING:
    from bookingsync.worker.identity import Match

MISSING_HASH = "missing"
# A link replaced by a successor booking: what its provider says of it later (the old booking
# cancelled as part of the move) no longer speaks for the meeting.
SUPERSEDED_HASH = "superseded"
MEETING_COLUMNS = (
    "status",
    "title",
    "start",
    "end",
    "timezone",
    "attendee_email",
    "attendee_name",
    "attendee_phone",
    "hosts",
    "conference_url",
    "content_hash",
    "booked",
    "deleted",
    "generation",
    "version",
    "next_sequence",
)


@dataclass
class LinkState:
    """A link as stored (id set) or as this page makes it (id None). Mutated while planning."""

    id: int | None
    meeting_id: str
    connection: str
    provider: str
    external_id: str
    content_hash: str
    scope: str | None = None
    mirrored: bool = False
    missing: bool = False
    source_updated_at: datetime | None = None
    source_delivered_at: datetime | None = None
    stale_count: int = 0
    rule: str | None = None  # the identity rule that made the link (issue 16); None reads as "origin"
    raw_hash: str | None = None  # as stored (worker/ingest_fingerprint.py)
    # The raw key of the record this page last applied through the link (None: none, or one that
    # must not be trusted to stand for the link's state); its fingerprint is written with the link.
    raw_key: str | None = None
    # The columns this page wrote, and their values.
    written: set[str] = field(default_factory=set)
    values: dict[str, Any] = field(default_factory=dict)


# A stored link's columns, in LinkState's order: what a page loads of each link (worker/ingest_load.py,
# worker/ingest_unchanged.py), so that `LinkState(*row)` builds it.
LINK_COLUMNS = (
    "id",
    "meeting_id",
    "connection",
    "provider",
    "external_id",
    "content_hash",
    "scope",
    "mirrored",
    "missing",
    "source_updated_at",
    "source_delivered_at",
    "stale_count",
    "rule",
    "raw_hash",
)
# The columns a link is loaded with (LinkState's) that a page may write: an update leaves out those
# it would set to the value they hold. The others (the raw record, its reading, last_seen_at) are
# not loaded, so they are written whenever set.
_COMPARED = frozenset(
    {"content_hash", "scope", "missing", "source_updated_at", "source_delivered_at", "stale_count"}
)


class StoredLink(NamedTuple):
    """A stored link as a meeting snapshot names it."""

    connection: str
    provider: str
    external_id: str


@dataclass
class MeetingSlot:
    """A meeting as stored (or made by this page), with the lifecycle state the rules need."""

    id: str
    state: MeetingState | None
    next_sequence: int = 1
    created: bool = False
    changed: bool = False
    created_at: datetime | None = None
    content_hash: str | None = None  # of state.meeting, when known without hashing it again
    source_updated_at: datetime | None = (
        None  # the newest provider stamp applied (conflicts.on_read compares it)
    )
    # A stored meeting's links as loaded with it (its events' snapshots list them); a page's new
    # links are added by `PagePlan.render`.
    stored_links: list[StoredLink] = field(default_factory=list)
    # A stored meeting's columns as loaded (`meeting_columns` and source_updated_at): the update
    # writes only those that differ. None: unknown, every column is written.
    stored: dict[str, Any] | None = None


@dataclass(frozen=True)
class Incoming:
    """One normalised record of the page, with its raw payload and (webhooks) its receipt time."""

    record: SourceRecord
    raw: Any
    delivered_at: datetime | None = None
    raw_key: str | None = None  # worker/ingest_fingerprint.raw_key of the raw record

    @cached_property
    def content_hash(self) -> str:
        return self.record.meeting.content_hash()


@dataclass(frozen=True)
class Outcome:
    meeting_id: str
    changed: bool
    events: tuple[str, ...] = ()
    stale: bool = False


@dataclass
class PagePlan:
    outcomes: list[Outcome] = field(default_factory=list)
    meetings: dict[str, MeetingSlot] = field(default_factory=dict)
    links: dict[str, LinkState] = field(default_factory=dict)
    # dedupe key -> event row; a non-timer row carries `snapshot_of` until `render` fills its payload.
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    events_of: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # meeting id -> its rows above
    cancel_stored_timers: set[str] = field(default_factory=set)
    # Late first sights beyond the late window: (meeting id, its end, the timers not set), reported by the store.
    skipped: list[tuple[str, datetime, tuple[Any, ...]]] = field(default_factory=list)

    @property
    def new_meetings(self) -> list[MeetingSlot]:
        return [m for m in self.meetings.values() if m.created]

    @property
    def changed_meetings(self) -> list[MeetingSlot]:
        return [m for m in self.meetings.values() if m.changed and not m.created]

    @property
    def new_links(self) -> list[LinkState]:
        return [link for link in self.links.values() if link.id is None]

    @property
    def stale(self) -> int:
        return sum(o.stale for o in self.outcomes)

    def fingerprint_links(self) -> None:
        """Give every link this page writes the `raw_hash` of the record its final state is the
        reading of (None: none to trust), so the next read of that record is recognised before
        normalising (worker/ingest_unchanged.py)."""
        for link in self.links.values():
            if link.id is not None and not link.written:
                continue
            wanted = link.raw_key
            if link.id is None or wanted != link.raw_hash:
                link.raw_hash = wanted
                link.values["raw_hash"] = wanted
                link.written.add("raw_hash")

    def render(self) -> list[dict[str, Any]]:
        """The event rows, non-timer payloads built from the meeting as it was at the event and its
        links (those stored, loaded with the meeting, and this page's new ones)."""
        page_links: dict[str, list[Any]] = {}
        for link in self.links.values():
            if link.id is None:
                page_links.setdefault(link.meeting_id, []).append(link)
        rows = []
        for row in self.events.values():
            view = row.pop("snapshot_of", None)
            if view is not None:
                mid = row["meeting_id"]
                links = [*self.meetings[mid].stored_links, *page_links.get(mid, [])]
                row["payload"] = {"meeting": meeting_json(view, links), **row["payload"]}
            rows.append(row)
        return rows


class MeetingView(NamedTuple):
    """The meeting's columns at one moment, read by `payloads.meeting_json` like a row (a tuple:
    one is made for every event that carries a snapshot, and a frozen dataclass cost three times as much)."""

    id: str
    status: str
    title: str | None
    start: datetime
    end: datetime
    timezone: str | None
    attendee_email: str | None
    attendee_name: str | None
    attendee_phone: str | None
    hosts: list[str]
    conference_url: str | None


def meeting_columns(
    state: MeetingState, next_sequence: int, content_hash: str | None = None
) -> dict[str, Any]:
    """The meetings row of a state (without id and times): the one mapping of state to columns."""
    m = state.meeting
    return {
        "status": m.status.value,
        "title": m.title,
        "start": m.start,
        "end": m.end,
        "timezone": m.timezone,
        "attendee_email": m.attendee.email,
        "attendee_name": m.attendee.name,
        "attendee_phone": m.attendee.phone,
        "hosts": list(m.hosts),
        "conference_url": m.conference_url,
        "content_hash": content_hash or m.content_hash(),
        "booked": state.booked,
        "deleted": state.deleted,
        "generation": state.generation,
        "version": state.version,
        "next_sequence": next_sequence,
    }


def state_of_columns(row: Any) -> MeetingState:
    """The lifecycle state of a meetings row (an ORM row or a Core row: attributes by name).

    Built without validation: the row was written from a validated Meeting (`meeting_columns`),
    and validating it again on every read was a fifth of the cost of re-reading a page."""
    attendee = Person.model_construct(
        email=row.attendee_email, name=row.attendee_name, phone=row.attendee_phone
    )
    meeting = Meeting.model_construct(
        status=MeetingStatus(row.status),
        title=row.title,
        start=row.start,
        end=row.end,
        timezone=row.timezone,
        attendee=attendee,
        hosts=tuple(row.hosts or ()),
        conference_url=row.conference_url,
    )
    return MeetingState(
        meeting=meeting,
        booked=row.booked,
        deleted=row.deleted,
        generation=row.generation,
        version=row.version,
    )


def link_reading(
    record: SourceRecord, raw: Any, now: datetime, content_hash: str | None = None
) -> dict[str, Any]:
    """The link columns a read of `record` sets on whichever path reads it (the bulk plan here,
    `store.apply_one`, a peer's or a mirror's link): what the provider said, stored as received
    and as a later read compares it (issue 16). Scope, missing and the ordering keys differ by
    path and are set beside it."""
    meeting = record.meeting
    return {
        "content_hash": content_hash or meeting.content_hash(),
        "raw": raw,
        "source_updated_at": record.source_updated_at,
        "start": meeting.start,
        "end": meeting.end,
        "observed": meeting.model_dump(mode="json"),
        "last_seen_at": now,
    }


def is_older(link: LinkState, incoming: Incoming) -> bool:
    """Whether `incoming` is an older snapshot than the one `link` holds, comparing like with like."""
    new = incoming.record.source_updated_at
    if new is not None and link.source_updated_at is not None:
        return new < link.source_updated_at
    if new is None and incoming.delivered_at is not None and link.source_delivered_at is not None:
        return incoming.delivered_at < link.source_delivered_at
    return False


def meetings_needed(
    incoming: Iterable[Incoming], links: dict[str, LinkState], matches: dict[str, Match]
) -> set[str]:
    """The stored meetings `plan_page` will read: those of records that may change one (a record
    whose link holds the same content, or a mirror, needs none), so a page that changed nothing
    reads no meeting at all."""
    needed: set[str] = set()
    for item in incoming:
        record = item.record
        link = links.get(record.external_id)
        if link is None:
            predecessor = links.get(record.supersedes) if record.supersedes else None
            if predecessor is not None:
                needed.add(predecessor.meeting_id)
            match = matches.get(record.external_id)
            if match is not None:
                needed.add(match.meeting_id)
        elif not link.mirrored and link.content_hash != item.content_hash:
            needed.add(link.meeting_id)
    return needed


def dedupe_key(meeting_id: str, intent: EventIntent) -> str:
    return f"{meeting_id}:{intent.type.value}:{intent.occurrence}"


def event_row(
    meeting_id: str,
    intent: EventIntent,
    now: datetime,
    event_id: str,
    sequence: int | None,
    key: str | None = None,
) -> dict[str, Any]:
    """An outbox row for `intent` (`key`: its `dedupe_key`, when the caller has it); a non-timer's
    payload gets the meeting snapshot added later."""
    return {
        "event_id": event_id,
        "meeting_id": meeting_id,
        "type": intent.type.value,
        "dedupe_key": key or dedupe_key(meeting_id, intent),
        "generation": intent.generation,
        "set_for": intent.set_for,
        "occurred_at": intent.occurred_at,
        "due_at": intent.due_at,
        "status": "pending",
        "attempts": 0,
        "sequence": sequence,
        "created_at": now,
        # A timer carries only its details (`late_by`); the relay snapshots the meeting when it fires.
        "payload": (intent_details(intent) or None) if intent.is_timer else intent_details(intent),
    }


class Planner:
    """Applies a page's records to the loaded state; `plan_page` is the entry point."""

    def __init__(
        self,
        plan: PagePlan,
        *,
        connection: str,
        provider: str,
        now: datetime,
        grace: timedelta,
        backfill: Backfill,
        new_id: Callable[[str], str],
    ) -> None:
        self.plan, self.connection, self.provider = plan, connection, provider
        self.now, self.grace, self.backfill, self.new_id = now, grace, backfill, new_id

    def _touch(self, link: LinkState, incoming: Incoming) -> None:
        """The record changes nothing: the link was seen now, and keeps the newest ordering key.
        Only what differs is written, so re-reading an unchanged page updates one column a link."""
        record = incoming.record
        values: dict[str, Any] = {"last_seen_at": self.now}
        if record.scope and record.scope != link.scope:
            values["scope"] = record.scope
        if not is_older(link, incoming):
            if record.source_updated_at and record.source_updated_at != link.source_updated_at:
                values["source_updated_at"] = record.source_updated_at
            if incoming.delivered_at and incoming.delivered_at != link.source_delivered_at:
                values["source_delivered_at"] = incoming.delivered_at
        self._set(link, **values)

    def _observe(self, link: LinkState, incoming: Incoming) -> None:
        """Everything the provider says of the booking, on the link only (a mirror, or a changed record)."""
        record = incoming.record
        self._set(
            link,
            **link_reading(record, incoming.raw, self.now, incoming.content_hash),
            scope=record.scope or link.scope,
            source_delivered_at=incoming.delivered_at,
            stale_count=link.stale_count,
        )

    def _new_link(self, meeting_id: str, record: SourceRecord, *, mirrored: bool, rule: str) -> LinkState:
        link = LinkState(
            id=None,
            meeting_id=meeting_id,
            connection=self.connection,
            provider=self.provider,
            external_id=record.external_id,
            content_hash="",
            mirrored=mirrored,
            rule=rule,
        )
        link.values.update(first_seen_at=self.now, missing=False, mirrored=mirrored, rule=rule)
        self.plan.links[record.external_id] = link
        return link

    def _set(self, link: LinkState, **values: Any) -> None:
        """Give `link` these column values. A stored link's update writes only the columns whose
        value differs from the one it holds (a move rewrites its times and reading, not its scope,
        counters and flags); a new link is inserted with every column."""
        stored = link.id is not None
        for name, value in values.items():
            if stored and name in _COMPARED and name not in link.written and getattr(link, name) == value:
                continue
            setattr(link, name, value)
            link.values[name] = value
            link.written.add(name)

    def apply(self, incoming: Incoming, match: Match | None) -> Outcome:
        record = incoming.record
        plan = self.plan
        content_hash = incoming.content_hash
        link = plan.links.get(record.external_id)
        if link is not None and not link.mirrored and is_older(link, incoming):
            self._set(link, stale_count=link.stale_count + 1)
            self._touch(link, incoming)
            link.raw_key = None  # the link holds a newer snapshot than this record
            return Outcome(meeting_id=link.meeting_id, changed=False, stale=True)
        if link is not None and link.content_hash in (content_hash, SUPERSEDED_HASH):
            self._touch(link, incoming)
            link.raw_key = None if link.mirrored else incoming.raw_key
            return Outcome(meeting_id=link.meeting_id, changed=False)
        if link is not None and link.mirrored:
            # Issue 15: our own bookings at a route target update what we observe there, only.
            link.raw_key = None  # mirrors are read by the per-record path (issue 16), never skipped
            self._observe(link, incoming)
            self._set(link, missing=record.meeting.status is MeetingStatus.CANCELLED)
            return Outcome(meeting_id=link.meeting_id, changed=False)

        predecessor = plan.links.get(record.supersedes) if link is None and record.supersedes else None
        if predecessor is not None and predecessor.mirrored:
            # Issue 15: our own move at a target made as a new booking, read before its write matched.
            predecessor.raw_key = None
            self._set(predecessor, content_hash=SUPERSEDED_HASH)
            link = self._new_link(
                predecessor.meeting_id,
                record,
                mirrored=True,
                rule=match.rule if match is not None else "successor",
            )
            self._observe(link, incoming)
            self._set(link, missing=record.meeting.status is MeetingStatus.CANCELLED)
            return Outcome(meeting_id=link.meeting_id, changed=False)
        if predecessor is not None:
            # A move made as "book the new time, cancel the old": the meeting continues under the new id.
            predecessor.raw_key = None
            self._set(predecessor, content_hash=SUPERSEDED_HASH, missing=True)
            slot = plan.meetings[predecessor.meeting_id]
            link = self._new_link(
                slot.id,
                record,
                mirrored=predecessor.mirrored,
                rule=match.rule if match is not None else "successor",
            )
        elif link is None and match is not None and match.meeting_id in plan.meetings:
            # Issue 16: the same real-world meeting, already known through another provider.
            slot = plan.meetings[match.meeting_id]
            link = self._new_link(slot.id, record, mirrored=False, rule=match.rule)
        elif link is None:
            slot = MeetingSlot(id=self.new_id("mtg"), state=None, created=True, created_at=self.now)
            plan.meetings[slot.id] = slot
            link = self._new_link(slot.id, record, mirrored=False, rule="origin")
        else:
            slot = plan.meetings[link.meeting_id]  # see meetings_needed
        self._observe(link, incoming)
        self._set(link, missing=False)
        link.raw_key = None if link.mirrored else incoming.raw_key
        if record.source_updated_at is not None:
            slot.source_updated_at = record.source_updated_at  # what the conflict policy compares (issue 16)
        return self._decide(slot, record.meeting, incoming.content_hash)

    def _decide(self, slot: MeetingSlot, new: Meeting, content_hash: str) -> Outcome:
        decided = decide(slot.state, new, self.now, self.grace, self.backfill)
        slot.state = decided.state
        slot.content_hash = content_hash if decided.state.meeting is new else None
        slot.changed = True
        if decided.skipped:
            self.plan.skipped.append((slot.id, new.end, decided.skipped))
        events = self.plan.events
        if decided.cancel_timers:
            if not slot.created:
                self.plan.cancel_stored_timers.add(slot.id)
            for row in self.plan.events_of.get(slot.id, ()):
                if row["set_for"] is not None and row["status"] == "pending":
                    row["status"] = "cancelled"
        for intent in decided.events:
            key = dedupe_key(slot.id, intent)
            if key in events:
                # A cancelled timer set again comes back to life; anything else stands as it is.
                if events[key]["status"] == "cancelled":
                    events[key].update(status="pending", due_at=intent.due_at)
                continue
            timer = intent.is_timer
            sequence = None
            if not timer:
                sequence, slot.next_sequence = slot.next_sequence, slot.next_sequence + 1
            row = event_row(slot.id, intent, self.now, self.new_id("evt"), sequence, key)
            if not timer:
                row["snapshot_of"] = self._view(slot)
            events[key] = row
            self.plan.events_of.setdefault(slot.id, []).append(row)
        return Outcome(meeting_id=slot.id, changed=True, events=tuple(i.type.value for i in decided.events))

    @staticmethod
    def _view(slot: MeetingSlot) -> MeetingView:
        assert slot.state is not None
        m = slot.state.meeting
        return MeetingView(
            id=slot.id,
            status=m.status.value,
            title=m.title,
            start=m.start,
            end=m.end,
            timezone=m.timezone,
            attendee_email=m.attendee.email,
            attendee_name=m.attendee.name,
            attendee_phone=m.attendee.phone,
            hosts=list(m.hosts),
            conference_url=m.conference_url,
        )


def plan_page(
    incoming: Iterable[Incoming],
    *,
    links: dict[str, LinkState],
    meetings: dict[str, MeetingSlot],
    matches: dict[str, Match],
    connection: str,
    provider: str,
    now: datetime,
    grace: timedelta,
    backfill: Backfill,
    new_id: Callable[[str], str],
) -> PagePlan:
    """Apply `incoming` in order to the stored `links` (by external id, this connection's, including
    superseded ones the records name) and `meetings` (by id: every meeting those links or `matches`
    name). `matches` are identity matches without an intent (echoes are linked before planning)."""
    plan = PagePlan(meetings=dict(meetings), links=dict(links))
    planner = Planner(
        plan, connection=connection, provider=provider, now=now, grace=grace, backfill=backfill, new_id=new_id
    )
    for item in incoming:
        plan.outcomes.append(planner.apply(item, matches.get(item.record.external_id)))
    return plan


# A version-4 UUID's fixed bits: version 4 in bits 76-79, the RFC 4122 variant in bits 62-63.
_UUID4_CLEAR = ((1 << 128) - 1) & ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_id(prefix: str) -> str:
    """`prefix_` and the 32 hex digits of a random UUID4, as `uuid.uuid4().hex` gives them, without
    building a UUID object for each (a rescheduled page makes three ids a meeting)."""
    return f"{prefix}_{int.from_bytes(os.urandom(16)) & _UUID4_CLEAR | _UUID4_SET:032x}"
