"""Data access for meetings, links, events and cursors. The caller owns the transaction.

Ingest applies a page at a time (worker/ingest_store.py plans it with worker/ingest_plan.py and
writes it in bulk); `apply_record` is that path for one record. The records issue 16's conflict
policy and identity rules speak for (reads of mirrors, peers and bidirectional origins, matches
without an intent) go through `apply_one`, one at a time. Re-applying the same content is
a no-op, so pages can be re-read and webhooks replayed freely. What is left here works on one
link or meeting at a time: a link vanishing from a complete read (`sweep`), echoes and mirrors.

A link bookingsync made as a mirror (`mirrored`) only records what the target holds: a read
through it never changes the canonical meeting (issue 16 puts a per-route conflict policy there).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from functools import cache
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from bookingsync.models.meeting import Meeting, MeetingStatus, SourceRecord
from bookingsync.models.tables import CursorRow, EventRow, LinkRow, MeetingRow
from bookingsync.worker import intent_store, intents, metrics
from bookingsync.worker.db import insert_for
from bookingsync.worker.ingest_plan import (
    MISSING_HASH,
    SUPERSEDED_HASH,
    Incoming,
    event_row,
    link_reading,
    meeting_columns,
    new_id,
    state_of_columns,
)
from bookingsync.worker.lifecycle import TIMER_TYPES, Backfill, EventIntent, MeetingState, decide
from bookingsync.worker.payloads import meeting_json
from bookingsync.worker.sql_lists import among

if TYPE_CHECKING:
    from bookingsync.worker.identity import Match

log = logging.getLogger(__name__)

__all__ = ["MISSING_HASH", "SUPERSEDED_HASH", "new_id"]


@dataclass(frozen=True)
class Applied:
    meeting_id: str
    changed: bool
    events: tuple[str, ...] = ()
    stale: bool = False  # an older snapshot than the one applied: counted on its link and ignored


def meeting_of(row: MeetingRow) -> Meeting:
    return state_of_columns(row).meeting


def state_of(row: MeetingRow) -> MeetingState:
    return state_of_columns(row)


def _write_meeting(row: MeetingRow, state: MeetingState, now: datetime) -> None:
    for name, value in meeting_columns(state, row.next_sequence).items():
        setattr(row, name, value)
    row.updated_at = now


def links_of(session: Session, meeting_ids: list[str]) -> dict[str, list[LinkRow]]:
    out: dict[str, list[LinkRow]] = {mid: [] for mid in meeting_ids}
    if meeting_ids:
        for link in session.exec(select(LinkRow).where(among(session, col(LinkRow.meeting_id), meeting_ids))):
            out[link.meeting_id].append(link)
    return out


def _locked_link(session: Session, connection: str, external_id: str) -> LinkRow | None:
    query = select(LinkRow).where(LinkRow.connection == connection, LinkRow.external_id == external_id)
    return session.exec(query.with_for_update()).first()


def _known_link(
    session: Session, connection: str, external_id: str, known: dict[str, LinkRow | None] | None
) -> LinkRow | None:
    if known is not None and external_id in known:
        return known[external_id]
    return _locked_link(session, connection, external_id)


def _older(link: LinkRow, record: SourceRecord, delivered_at: datetime | None) -> bool:
    """worker/ingest_plan.is_older for an ORM link: an older snapshot than the one applied."""
    new = record.source_updated_at
    if new is not None and link.source_updated_at is not None:
        return new < link.source_updated_at
    if new is None and delivered_at is not None and link.source_delivered_at is not None:
        return delivered_at < link.source_delivered_at
    return False


def lock_links(session: Session, connection: str, external_ids: set[str]) -> dict[str, LinkRow | None]:
    """Load (and lock) links of `connection` in one query, as ORM rows; absent ids map to None.
    (Ingest reads a page's links as plain rows: worker/ingest_load.load_links.)"""
    found: dict[str, LinkRow | None] = dict.fromkeys(external_ids)
    if external_ids:
        query = select(LinkRow).where(
            LinkRow.connection == connection, among(session, col(LinkRow.external_id), external_ids)
        )
        for link in session.exec(query.order_by(col(LinkRow.id)).with_for_update()):
            found[link.external_id] = link
    return found


def _write_plan(
    session: Session,
    row: MeetingRow,
    old: MeetingState | None,
    new: Meeting,
    now: datetime,
    grace: timedelta,
    links: list[LinkRow] | None = None,
    backfill: Backfill = Backfill.UPCOMING,
) -> tuple[str, ...]:
    """Store what `decide` says. `links` is given for a brand-new meeting (no events exist yet)."""
    plan = decide(old, new, now, grace, backfill)
    if plan.skipped:
        # Late first sight beyond the late window: history, but never silently (README, Events).
        metrics.late_timers_skipped(plan.skipped)
        log.info(
            "meeting %s was first seen %s after its end (%s), beyond the late window of %s: %s not sent",
            row.id,
            now - new.end,
            new.end.isoformat(),
            grace,
            " and ".join(t.value for t in plan.skipped),
        )
    _write_meeting(row, plan.state, now)
    if plan.cancel_timers:
        session.exec(
            update(EventRow)
            .where(
                col(EventRow.meeting_id) == row.id,
                col(EventRow.type).in_([t.value for t in TIMER_TYPES]),
                col(EventRow.status).in_(["pending", "leased"]),
            )
            .values(status="cancelled", cancelled_at=now)  # its retention window starts now
        )
    if plan.events:
        session.flush()  # the meeting row must exist before events point at it
        snapshot = None
        if any(not intent.is_timer for intent in plan.events):
            snapshot = meeting_json(row, links if links is not None else links_of(session, [row.id])[row.id])
        add_events(session, row, plan.events, now, snapshot, fresh=links is not None)
    return tuple(intent.type.value for intent in plan.events)


write_plan = (
    _write_plan  # for worker/conflicts.py and worker/links.py: merges and splits are stored the same way
)


def add_events(
    session: Session,
    row: MeetingRow,
    intents: tuple[EventIntent, ...],
    now: datetime,
    snapshot: dict[str, Any] | None,
    *,
    fresh: bool = False,
) -> None:
    """Insert each event once per dedupe key; a cancelled timer set again comes back to life.

    Timers carry no snapshot: the relay takes one when they fire, and numbers them then. An event
    due now takes the meeting's next `sequence` here, under the meeting row's lock, so numbers
    follow commit order (issue 13). `fresh` skips the lookup of existing keys for a meeting
    created in this transaction. New rows go in as one bulk insert.
    """
    meeting_id = row.id
    wanted = {f"{meeting_id}:{intent.type.value}:{intent.occurrence}": intent for intent in intents}
    if not fresh:
        for existing in session.exec(select(EventRow).where(col(EventRow.dedupe_key).in_(list(wanted)))):
            intent = wanted.pop(existing.dedupe_key)
            if existing.status == "cancelled":
                existing.status, existing.due_at, existing.lease_until = "pending", intent.due_at, None
                existing.cancelled_at = None
    if wanted:
        rows = []
        for intent in wanted.values():
            sequence = None
            if not intent.is_timer:
                sequence, row.next_sequence = row.next_sequence, row.next_sequence + 1
            event = event_row(meeting_id, intent, now, new_id("evt"), sequence)
            if not intent.is_timer:
                event["payload"] = {"meeting": snapshot, **event["payload"]}
            rows.append(event)
        session.execute(insert(EventRow), rows)


def new_link(
    meeting_id: str,
    *,
    connection: str,
    provider: str,
    external_id: str,
    now: datetime,
    rule: str,
    mirrored: bool = False,
    content_hash: str = "",
) -> LinkRow:
    """A link first seen now (added to no session): the one place a LinkRow is put together."""
    return LinkRow(
        meeting_id=meeting_id,
        connection=connection,
        provider=provider,
        external_id=external_id,
        content_hash=content_hash,
        first_seen_at=now,
        last_seen_at=now,
        mirrored=mirrored,
        rule=rule,
    )


def _read(
    link: LinkRow, record: SourceRecord, raw: Any, now: datetime, content_hash: str | None = None
) -> None:
    for name, value in link_reading(record, raw, now, content_hash).items():
        setattr(link, name, value)
    link.scope = record.scope or link.scope


def observe(link: LinkRow, record: SourceRecord, raw: Any, now: datetime) -> None:
    """Record what the provider says of a mirror link, and nothing else: no meeting change, no event."""
    _read(link, record, raw, now)
    link.missing = record.meeting.status is MeetingStatus.CANCELLED


def _insert_link(session: Session, values: dict[str, Any]) -> int | None:
    """`INSERT … ON CONFLICT DO NOTHING` of one link: its id, or None when another writer's link
    of the same (connection, external id) is there (on PostgreSQL, after waiting for its commit)."""
    table = LinkRow.__table__  # type: ignore[attr-defined]
    stmt = (
        insert_for(session.get_bind().dialect.name)(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["connection", "external_id"])
        .returning(table.c.id)
    )
    link_id: int | None = session.execute(stmt).scalar()
    return link_id


def link_peer(
    session: Session,
    match: Match,
    *,
    connection: str,
    provider: str,
    record: SourceRecord,
    raw: Any,
    now: datetime,
    delivered_at: datetime | None = None,
) -> LinkRow | None:
    """Issue 16: join a record an identity rule matched to its meeting, as a peer link (the same
    meeting booked at another provider). Nothing about the meeting changes and no event is made:
    the next event of the meeting lists the link. The audit trail says by which rule.

    First sight is an upsert (issue 13): a webhook and a poll that match the same record at once
    both get here; the link goes in with `INSERT … ON CONFLICT DO NOTHING`, which on PostgreSQL
    waits for the other transaction and then inserts nothing. None means another writer linked the
    record first: the caller reads the record as a read of that link, and nothing is rolled back."""
    from bookingsync.worker import identity

    link_id = _insert_link(
        session,
        dict(
            meeting_id=match.meeting_id,
            connection=connection,
            provider=provider,
            external_id=record.external_id,
            **link_reading(record, raw, now),
            scope=record.scope,
            source_delivered_at=delivered_at,
            stale_count=0,
            missing=record.meeting.status is MeetingStatus.CANCELLED,
            mirrored=False,
            first_seen_at=now,
            rule=match.rule,
        ),
    )
    if link_id is None:
        log.info(
            "%s %s was linked by another writer at the same moment; reading it as that link",
            connection,
            record.external_id,
        )
        return None
    link = session.get(LinkRow, link_id)
    assert link is not None  # inserted just now, in this transaction
    identity.audit(
        session,
        meeting_id=match.meeting_id,
        action="linked",
        actor="identity",
        now=now,
        connection=connection,
        external_id=record.external_id,
        rule=match.rule,
    )
    log.info(
        "%s %s is meeting %s, booked there too (linked by %s)",
        connection,
        record.external_id,
        match.meeting_id,
        match.rule,
    )
    return link


def _insert_once(session: Session, link: LinkRow) -> LinkRow:
    """Insert a new link, or take the one another writer inserted at the same moment (issue 13:
    an echo read by a webhook and a poll at once, or beside our write's own answer): `INSERT … ON
    CONFLICT DO NOTHING`, then the row under lock, so neither writer's page is rolled back."""
    columns = LinkRow.__table__.columns  # type: ignore[attr-defined]
    _insert_link(session, {c.name: getattr(link, c.name) for c in columns if c.name != "id"})
    stored = _locked_link(session, link.connection, link.external_id)
    assert stored is not None  # inserted now, or committed by the writer that won
    return stored


def link_echo(
    session: Session,
    match: Match,
    *,
    connection: str,
    provider: str,
    record: SourceRecord,
    raw: Any,
    now: datetime,
) -> LinkRow:
    """Link a record that is the echo of a write of ours (see worker/identity.py) to its meeting.

    When the answer named the booking by another id of the same booking (HubSpot: the calendar
    event id, before the CRM record was read), that link is re-keyed to the id reads use.
    """
    intent = match.intent
    assert intent is not None  # an echo is the echo of one of our writes
    link = None
    if record.reference and record.reference == intent.external_id != record.external_id:
        link = _locked_link(session, connection, intent.external_id)
        if link is not None and link.meeting_id == match.meeting_id:
            link.external_id = record.external_id
        else:
            link = None
    if link is None:
        link = _insert_once(
            session,
            new_link(
                match.meeting_id,
                connection=connection,
                provider=provider,
                external_id=record.external_id,
                now=now,
                rule=match.rule,
                mirrored=True,
            ),
        )
    if link.meeting_id != match.meeting_id:  # linked meanwhile to another meeting: that link stands
        log.warning(
            "%s %s echoes a write for meeting %s but is linked to meeting %s; left as it is",
            connection,
            record.external_id,
            match.meeting_id,
            link.meeting_id,
        )
        return link
    observe(link, record, raw, now)
    row = intent_store.get(session, intent.id) if intent.id is not None else None
    if (
        row is not None
        and row.external_id
        and row.external_id != record.external_id
        and record.meeting.active
    ):
        _confirmed(session, row.external_id, link, now)
    if row is not None and row.external_id != record.external_id:
        current = intent_store.value(row)
        changed = intents.echoed(current, record.external_id)
        if current.state is intents.State.DONE and record.reference == current.external_id:
            changed = replace(current, external_id=record.external_id, alias=current.external_id)
        intent_store.save(row, changed, now)
        if changed.state is intents.State.DONE and current.state is not intents.State.DONE:
            # The echo settled what held this mirror (a lost answer): let its dead deliveries run again.
            intent_store.requeue_dead_deliveries(session, match.meeting_id, connection, now)
    log.info(
        "%s %s is bookingsync's own booking for meeting %s (matched by %s, intent %s)",
        connection,
        record.external_id,
        match.meeting_id,
        match.rule,
        intent.reference,
    )
    return link


def _confirmed(session: Session, booked: str, appointment: LinkRow, now: datetime) -> None:
    """Issue 16: an active booking that carries the reference of our write whose answer was a
    provisional booking (`booked`, Meetergo's double opt-in, still pending as last read) is its
    confirmed appointment: the provisional link is superseded and our write names the appointment,
    so a later move or cancel reaches the booking that exists (the same as the `double-opt-in`
    identity rule does for a confirmation that drops our reference)."""
    old = _locked_link(session, appointment.connection, booked)
    observed = old.observed if old is not None else None
    if (
        old is None
        or old.meeting_id != appointment.meeting_id
        or not isinstance(observed, dict)
        or observed.get("status") != MeetingStatus.PENDING.value
    ):
        return
    old.content_hash = SUPERSEDED_HASH
    intent_store.follow(session, old.meeting_id, old.connection, booked, appointment.external_id, now)
    # A cancel that could not reach the provisional booking (meetergo documents no such call) is a
    # dead route delivery: put it back in line, so the appointment that now exists is cancelled.
    intent_store.requeue_dead_deliveries(session, old.meeting_id, old.connection, now)
    log.info(
        "%s %s confirms the provisional booking %s of meeting %s",
        appointment.connection,
        appointment.external_id,
        booked,
        old.meeting_id,
    )


def apply_record(
    session: Session,
    *,
    connection: str,
    provider: str,
    record: SourceRecord,
    raw: Any,
    now: datetime,
    grace: timedelta,
    backfill: Backfill = Backfill.UPCOMING,
    match: Match | None = None,
    delivered_at: datetime | None = None,
) -> Applied:
    """Apply one record as a page of one (worker/ingest_store.py): upsert its link and meeting and
    write the events the change makes. `match` is what `identity.match_unlinked` found for it when
    its link does not exist yet; `delivered_at` orders a webhook record without an updated_at."""
    from bookingsync.worker.ingest_store import apply_page

    [outcome] = apply_page(
        session,
        connection=connection,
        provider=provider,
        incoming=[Incoming(record=record, raw=raw, delivered_at=delivered_at)],
        now=now,
        grace=grace,
        backfill=backfill,
        matches={record.external_id: match} if match is not None else {},
    )
    return Applied(meeting_id=outcome.meeting_id, changed=outcome.changed, events=outcome.events)


def apply_one(
    session: Session,
    *,
    connection: str,
    provider: str,
    record: SourceRecord,
    raw: Any,
    now: datetime,
    grace: timedelta,
    known: dict[str, LinkRow | None] | None = None,
    backfill: Backfill = Backfill.UPCOMING,
    match: Match | None = None,
    delivered_at: datetime | None = None,
) -> Applied:
    """The per-record path, for the records issue 16 speaks for (worker/ingest_store.py routes
    them here): a read of a mirror, a peer, or a link on a bidirectional route goes by the conflict
    policy (`conflicts.on_read`), an identity match without an intent becomes a peer link, a
    double-opt-in match supersedes the provisional booking. Upsert the record's link and meeting and
    write the events the change makes, with the ordering keys the bulk path keeps.

    `known` holds links already loaded and locked by `lock_links` for this transaction; a link
    created here is added to it, so a second record with the same id in one page finds it.
    `match` is what `identity.match_unlinked` found for a record whose link does not exist yet.
    """
    content_hash = record.meeting.content_hash()
    link = _known_link(session, connection, record.external_id, known)
    if link is not None and not link.mirrored and _older(link, record, delivered_at):
        # Never backwards (issue 13): the same rule and count as worker/ingest_plan.is_older.
        link.stale_count = (link.stale_count or 0) + 1
        link.last_seen_at = now
        return Applied(meeting_id=link.meeting_id, changed=False, stale=True)
    if link is not None and link.content_hash in (content_hash, SUPERSEDED_HASH):
        link.last_seen_at = now
        link.scope = record.scope or link.scope
        return Applied(meeting_id=link.meeting_id, changed=False)

    if link is not None:
        # Issue 16: a mirror, a peer or a stale record goes by the conflict policy; the origin applies.
        from bookingsync.worker import conflicts

        decided = conflicts.on_read(session, link, record, raw, now, grace, backfill)
        if decided is not None:
            return decided
    if link is None and match is not None and match.intent is not None:
        link = link_echo(
            session, match, connection=connection, provider=provider, record=record, raw=raw, now=now
        )
        if known is not None:
            known[record.external_id] = link
        return Applied(meeting_id=match.meeting_id, changed=False)
    if link is None and match is not None and match.supersedes is None:
        link = link_peer(
            session,
            match,
            connection=connection,
            provider=provider,
            record=record,
            raw=raw,
            now=now,
            delivered_at=delivered_at,
        )
        if link is None:
            # Another writer linked it first (issue 13): this record is a read of that link now.
            winner = _locked_link(session, connection, record.external_id)
            assert winner is not None  # the insert found it: it is committed (PostgreSQL) or ours
            known = known if known is not None else {}
            known[record.external_id] = winner
            return apply_one(
                session,
                connection=connection,
                provider=provider,
                record=record,
                raw=raw,
                now=now,
                grace=grace,
                known=known,
                backfill=backfill,
                delivered_at=delivered_at,
            )
        if known is not None:
            known[record.external_id] = link
        return Applied(meeting_id=match.meeting_id, changed=False)

    predecessor = None
    links: list[LinkRow] | None = None  # given only for a brand-new meeting
    supersedes = record.supersedes or (match.supersedes if match is not None else None)
    if link is None and supersedes:
        predecessor = _known_link(session, connection, supersedes, known)
    if link is None and predecessor is not None and predecessor.mirrored:
        # Issue 15: our own move at a target made as a new booking, read before its write matched.
        predecessor.content_hash = SUPERSEDED_HASH
        link = new_link(
            predecessor.meeting_id,
            connection=connection,
            provider=provider,
            external_id=record.external_id,
            now=now,
            rule=match.rule if match is not None else "successor",
            mirrored=True,
        )
        session.add(link)
        observe(link, record, raw, now)
        if match is not None and match.supersedes:
            # Issue 16: our provisional booking was confirmed as this appointment; our write now names it.
            intent_store.follow(
                session, predecessor.meeting_id, connection, match.supersedes, record.external_id, now
            )
        if known is not None:
            known[record.external_id] = link
        return Applied(meeting_id=link.meeting_id, changed=False)
    if link is None and predecessor is not None:
        # A move made as "book the new time, cancel the old": the meeting continues under the new id.
        row = session.exec(
            select(MeetingRow).where(MeetingRow.id == predecessor.meeting_id).with_for_update()
        ).one()
        old = state_of(row)
        predecessor.content_hash, predecessor.missing = SUPERSEDED_HASH, True
        link = new_link(
            row.id,
            connection=connection,
            provider=provider,
            external_id=record.external_id,
            now=now,
            rule=match.rule if match is not None else "successor",
            mirrored=predecessor.mirrored,
            content_hash=content_hash,
        )
        session.add(link)
    elif link is None:
        # hosts given outright: a default_factory costs pydantic a signature inspection per row.
        row = MeetingRow(
            id=new_id("mtg"),
            status=record.meeting.status.value,
            start=record.meeting.start,
            end=record.meeting.end,
            hosts=list(record.meeting.hosts),
            content_hash=content_hash,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()  # the meeting row must exist before its link points at it
        old = None
        link = new_link(
            row.id,
            connection=connection,
            provider=provider,
            external_id=record.external_id,
            now=now,
            rule="origin",
            content_hash=content_hash,
        )
        session.add(link)
        links = [link]
    else:
        row = session.exec(select(MeetingRow).where(MeetingRow.id == link.meeting_id).with_for_update()).one()
        old = state_of(row)
    _read(link, record, raw, now, content_hash)
    link.source_delivered_at = delivered_at
    link.missing = False
    if known is not None:
        known[record.external_id] = link
    if record.source_updated_at is not None:
        row.source_updated_at = record.source_updated_at  # what the conflict policy compares (issue 16)
    events = _write_plan(session, row, old, record.meeting, now, grace, links, backfill)
    return Applied(meeting_id=row.id, changed=True, events=events)


def origin_connection(session: Session, meeting_id: str) -> str | None:
    """Where the meeting was first seen (not a mirror bookingsync made)."""
    return origin_connections(session, {meeting_id}).get(meeting_id)


def origin_connections(session: Session, meeting_ids: set[str]) -> dict[str, str]:
    """`origin_connection` for many meetings in one query (a publish batch's)."""
    links = LinkRow.__table__.c  # type: ignore[attr-defined]
    query = (
        sa_select(links.meeting_id, links.connection)
        .where(among(session, links.meeting_id, meeting_ids), links.mirrored.is_(False))
        .order_by(links.meeting_id, links.first_seen_at, links.id)
    )
    out: dict[str, str] = {}
    for meeting_id, connection in session.execute(query):
        out.setdefault(meeting_id, connection)  # the first seen per meeting
    return out


def link_for(session: Session, meeting_id: str, connection: str) -> LinkRow | None:
    """The meeting's current link at `connection`: the newest one not replaced by a successor."""
    query = select(LinkRow).where(LinkRow.meeting_id == meeting_id, LinkRow.connection == connection)
    links = list(session.exec(query.order_by(col(LinkRow.id).desc()).with_for_update()))
    return next((link for link in links if link.content_hash != SUPERSEDED_HASH), links[0] if links else None)


def record_mirror(
    session: Session,
    *,
    meeting_id: str,
    connection: str,
    provider: str,
    record: SourceRecord,
    raw: Any,
    now: datetime,
    replaces: str | None = None,
) -> LinkRow:
    """Link what a target provider answered for a booking we made there to the meeting it mirrors.

    No events: it is the same real-world meeting. The link may exist already: an echo of the
    booking (a webhook or a read) can come before the answer and be linked then. `replaces` is
    the booking this one took over from (a move made as book-new-then-cancel-old): reads of it no
    longer speak for the mirror, and it is cancelled by a write of its own.
    """
    link = _locked_link(session, connection, record.external_id)
    if link is None:
        link = new_link(
            meeting_id,
            connection=connection,
            provider=provider,
            external_id=record.external_id,
            now=now,
            rule="route",
            mirrored=True,
        )
        session.add(link)
    elif link.meeting_id != meeting_id:
        # Only a record ingested before bookingsync knew it wrote there (no intent) can get here.
        log.warning(
            "%s %s was linked to meeting %s but is the booking bookingsync made for meeting %s; moving the "
            "link to %s",
            connection,
            record.external_id,
            link.meeting_id,
            meeting_id,
            meeting_id,
        )
        link.meeting_id = meeting_id
        link.mirrored = True
    # Issue 16: a booking of the meeting's own source (or a peer) that a bidirectional route moved
    # stays what it is: only bookings we made are mirrors.
    observe(link, record, raw, now)
    if replaces and replaces != record.external_id:
        old = _locked_link(session, connection, replaces)
        if old is not None and old.meeting_id == meeting_id:
            old.content_hash = SUPERSEDED_HASH
    return link


def mark_missing(session: Session, link: LinkRow, now: datetime, grace: timedelta) -> Applied:
    """The link vanished from a complete read: at its source the meeting no longer exists."""
    if link.mirrored:
        # Issue 15: one of our bookings vanished at a route target; the meeting lives on elsewhere.
        link.missing = True
        return Applied(meeting_id=link.meeting_id, changed=False)
    row = session.exec(select(MeetingRow).where(MeetingRow.id == link.meeting_id).with_for_update()).one()
    old = state_of(row)
    link.missing = True
    link.content_hash = MISSING_HASH
    gone = old.meeting.model_copy(update={"status": MeetingStatus.CANCELLED})
    events = _write_plan(session, row, old, gone, now, grace)
    return Applied(meeting_id=row.id, changed=True, events=events)


def sweep(
    session: Session,
    *,
    connection: str,
    scope: str,
    window_start: datetime,
    seen: frozenset[str],
    now: datetime,
    grace: timedelta,
) -> list[Applied]:
    """Mark missing every link of `scope` a complete read did not return, within its time window."""
    query = (
        select(LinkRow)
        .join(MeetingRow, col(MeetingRow.id) == col(LinkRow.meeting_id))
        .where(
            LinkRow.connection == connection,
            LinkRow.scope == scope,
            col(LinkRow.missing).is_(False),
            col(MeetingRow.start) >= window_start,
        )
    )
    return [
        mark_missing(session, link, now, grace)
        for link in session.exec(query).all()
        if link.external_id not in seen
    ]


def get_cursor(session: Session, connection: str) -> dict[str, Any] | None:
    row = session.get(CursorRow, connection)
    return dict(row.value) if row is not None and row.value is not None else None


@cache
def _cursor_upsert(dialect: str) -> Any:
    """Built once per dialect: it runs with every page."""
    table = CursorRow.__table__  # type: ignore[attr-defined]
    stmt = insert_for(dialect)(table)
    return stmt.on_conflict_do_update(
        index_elements=[table.c.connection],
        set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
    )


def save_cursor(session: Session, connection: str, value: dict[str, Any], now: datetime) -> None:
    """One upsert (the cursor is written with every page, so one statement, not a read and a write)."""
    conn = session.connection()
    conn.execute(
        _cursor_upsert(conn.dialect.name), {"connection": connection, "value": value, "updated_at": now}
    )
    loaded = session.identity_map.get(session.identity_key(CursorRow, connection))
    if loaded is not None:  # a CursorRow read earlier in this session is now out of date
        session.expire(loaded)


def watched_emails(session: Session, since: datetime) -> frozenset[str]:
    """Attendees of meetings that are upcoming or ended after `since`."""
    # By the `end` index alone: a DISTINCT or an IS NOT NULL here steers SQLite to the attendee
    # index, a walk over every meeting ever stored; the set removes repeats and empty emails.
    query = select(MeetingRow.attendee_email).where(col(MeetingRow.end) >= since)
    return frozenset(email for email in session.exec(query) if email)
