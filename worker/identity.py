"""Which canonical meeting a record from a connection belongs to, when its (connection, external_id)
is not linked yet. Called by ingest for every such record, before a new meeting is made.

Rules, in order (the first that gives exactly one meeting wins; two meetings is no match):

    answer        the record's id is one an answer of ours gave (or one a write of ours acted on)
    reference     the record carries a reference we planted (or the provider's alias of a booking
                  we made: HubSpot keeps the calendar event id in `hs_unique_id`)
    open-intent   before the answer: a create or move of ours at this connection, sent and not
                  answered (or held as unknown), for exactly this start and end, and the same
                  attendee where the record names one

Then, for a record none of these matched, the configured rules (`[identity] rules`, issue 16):

    attendee-start  a meeting with the same normalised attendee email and the same start (within
                    `start_tolerance_seconds`, default 0), whose hosts overlap the record's where
                    both name hosts; not cancelled, and with no live link at this connection
                    already (one booking at a provider is one link)
    double-opt-in   the same, but the meeting's one live link at this very connection is provisional
                    (`pending`: the meeting itself, or our mirror there as last read or answered)
                    and the record is active: the confirmed appointment of a double opt-in
                    (Meetergo) continues the provisional booking, which it supersedes (for a mirror,
                    our write's intent follows it to the appointment)

Two or more meetings for one record link nothing: the record becomes a meeting of its own, and
the ambiguity is logged (WARNING), counted (`bookingsync_identity_matches_total{rule="ambiguous"}`)
and kept in each candidate's audit trail, where `bookingsync meetings show` lists it.

`choose` and `choose_by_rules` are pure; `match_unlinked` asks, in one query, whether any intent
exists at the connection and which meetings the rules could match; then, only when there are
some, the candidate intents and the candidate meetings' links at the connection, one query each,
whatever the page's size: ingest calls it once per page, so it must not cost a query per record.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, literal
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from bookingsync.models.meeting import ACTIVE_STATUSES, MeetingStatus, SourceRecord
from bookingsync.models.tables import AuditRow, IntentRow, LinkRow, MeetingRow
from bookingsync.worker import intent_store, metrics
from bookingsync.worker.config import Config, IdentityConfig
from bookingsync.worker.intents import Intent, State, Step
from bookingsync.worker.sql_lists import among, one_of

log = logging.getLogger(__name__)

ANSWER, REFERENCE, OPEN_INTENT = "answer", "reference", "open-intent"
ATTENDEE_START, DOUBLE_OPT_IN = "attendee-start", "double-opt-in"
AMBIGUOUS = "ambiguous"
# Link rules that are not identity rules (how else a link joins its meeting): see LinkRow.rule.
ORIGIN, ROUTE, SUCCESSOR, HAND = "origin", "route", "successor", "hand"
# Links made by these are our own bookings at a route target.
ECHO_RULES = frozenset({ANSWER, REFERENCE, OPEN_INTENT, ROUTE})
# What `store.SUPERSEDED_HASH` marks: a link replaced by a successor, no longer the meeting's booking there.
_SUPERSEDED = "superseded"


@dataclass(frozen=True)
class Rules:
    """The configured identity rules (`[identity]`), as `choose_by_rules` needs them."""

    attendee_start: bool = True
    tolerance: timedelta = timedelta(0)
    host_overlap: bool = True

    @classmethod
    def of(cls, cfg: IdentityConfig) -> Rules:
        return cls(
            attendee_start="attendee-start" in cfg.rules,
            tolerance=timedelta(seconds=cfg.start_tolerance_seconds),
            host_overlap=cfg.require_host_overlap,
        )


# Ingest calls `match_unlinked(session, connection, records)` once per page, with no config in
# reach: the process's runtime sets the rules here when it is made (`configure`), tests too.
_rules = Rules()


def configure(cfg: Config) -> None:
    global _rules
    _rules = Rules.of(cfg.identity)


def configured() -> Rules:
    return _rules


@dataclass(frozen=True)
class Match:
    """The meeting a record belongs to, the rule that said so, and (for the rules above) the write
    of ours it echoes. Issue 16's rules will give matches without an intent: links of the meeting
    at another provider, not mirrors."""

    meeting_id: str
    rule: str
    intent: Intent | None = None
    # double-opt-in: the provisional booking's id at this connection, which the record supersedes.
    supersedes: str | None = None


@dataclass(frozen=True)
class Candidate:
    """A canonical meeting as the identity rules see it: its attendee, start, hosts, and its live
    links' ids at the connection the record comes from (a meeting has one booking per provider)."""

    meeting_id: str
    attendee_email: str | None
    start: datetime
    hosts: tuple[str, ...]
    status: str
    here: tuple[str, ...] = ()  # live links at the record's connection
    # Those links are all provisional there (`pending`: a double opt-in awaiting confirmation),
    # as the provider said of them when last read or answered.
    here_pending: bool = False


@dataclass(frozen=True)
class Ambiguity:
    """Two or more meetings matched one record: nothing is linked."""

    rule: str
    meeting_ids: tuple[str, ...] = field(default=())


def _one(record: SourceRecord, rule: str, hits: list[Intent]) -> Match | None:
    meetings = {i.meeting_id for i in hits}
    if len(meetings) != 1:
        return None
    # The newest write that names it: the one whose answer (or echo) it is.
    return Match(meeting_id=hits[-1].meeting_id, rule=rule, intent=hits[-1])


def _open(intent: Intent) -> bool:
    sent = intent.attempts > 0 and (
        intent.state is State.UNKNOWN
        or (intent.state is State.PENDING and intent.step in (Step.CALLING, Step.LOST))
    )
    return intent.books and sent


def choose(record: SourceRecord, candidates: Sequence[Intent]) -> Match | None:
    """The meeting whose write `record` echoes, by the rules above; None when none or two match."""
    rid = record.external_id
    by_id = [i for i in candidates if rid in (i.external_id, i.subject, i.alias)]
    if by_id:
        return _one(record, ANSWER, by_id)
    if record.reference:
        by_reference = [i for i in candidates if record.reference in (i.reference, i.alias)]
        if by_reference:
            return _one(record, REFERENCE, by_reference)
    m = record.meeting
    email = m.attendee.email
    slot = [
        i
        for i in candidates
        if _open(i)
        and (i.start, i.end) == (m.start, m.end)
        and (email is None or i.attendee_email is None or email == i.attendee_email)
    ]
    return _one(record, OPEN_INTENT, slot) if slot else None


def _hosts_overlap(a: Sequence[str], b: Sequence[str]) -> bool:
    return not a or not b or bool(set(a) & set(b))


def choose_by_rules(
    record: SourceRecord, candidates: Sequence[Candidate], rules: Rules
) -> Match | Ambiguity | None:
    """The meeting `record` is, by the configured rules; an Ambiguity when two or more are; None
    when none is (or the record names no attendee: no rule can match it then)."""
    m = record.meeting
    email = m.attendee.email
    if not rules.attendee_start or email is None:
        return None
    same = [
        c
        for c in candidates
        if c.attendee_email == email
        and abs(c.start - m.start) <= rules.tolerance
        and c.status != MeetingStatus.CANCELLED.value
        and (not rules.host_overlap or _hosts_overlap(c.hosts, m.hosts))
    ]
    joinable: list[tuple[Candidate, str, str | None]] = []
    for c in same:
        if not c.here:
            joinable.append((c, ATTENDEE_START, None))
        elif (
            (c.status == MeetingStatus.PENDING.value or c.here_pending)
            and m.status in ACTIVE_STATUSES
            and len(c.here) == 1
        ):
            joinable.append((c, DOUBLE_OPT_IN, c.here[0]))
    if not joinable:
        return None
    if len(joinable) > 1:
        return Ambiguity(rule=joinable[0][1], meeting_ids=tuple(sorted(c.meeting_id for c, _, _ in joinable)))
    c, rule, supersedes = joinable[0]
    return Match(meeting_id=c.meeting_id, rule=rule, supersedes=supersedes)


def _look_up(
    session: Session,
    connection: str,
    records: Sequence[SourceRecord],
    tolerance: timedelta | None,
) -> tuple[bool, list[Any]]:
    """Whether bookingsync ever wrote to `connection` (then intents may match), and the meetings the
    rules could match any of `records` to (`tolerance` None: no rule asks): one indexed query for
    both, whatever the page's size, a column's values bound as one list (worker/sql_lists.py).

    Ingest asks this for every page with a new booking, where it is one round trip of the page's
    few: the two were two queries. The meetings come from the range on `start` (from the earliest
    to the latest start of the page, widened by the tolerance), with the attendee
    among the page's, which rides the (attendee_email, start) index; beside a one-row table, so
    the answer has a row (the intents' flag) when no meeting matches."""
    emails = sorted({r.meeting.attendee.email for r in records if r.meeting.attendee.email})
    conn = session.connection()
    if tolerance is None or not emails:
        return bool(
            conn.execute(_statement(conn.dialect.name, False), {"connection": connection}).scalar()
        ), []
    # The range, even without a tolerance: `choose_by_rules` compares each start, and a range binds
    # two times on either database (a list of times has no one-parameter form on SQLite).
    starts = [r.meeting.start for r in records if r.meeting.attendee.email]
    rows = conn.execute(
        _statement(conn.dialect.name, True),
        {
            "connection": connection,
            "emails": emails,
            "earliest": min(starts) - tolerance,
            "latest": max(starts) + tolerance,
        },
    ).all()
    return bool(rows[0][0]), [tuple(row[1:]) for row in rows if row[1] is not None]


# `_look_up`'s two statements (without meetings, with), built once per dialect: building and
# keying a statement for every page cost a tenth of the look-up.
_STATEMENTS: dict[tuple[str, bool], Any] = {}


def _statement(dialect: str, with_meetings: bool) -> Any:
    stmt = _STATEMENTS.get((dialect, with_meetings))
    if stmt is not None:
        return stmt
    intents = IntentRow.__table__  # type: ignore[attr-defined]
    wrote = (
        sa_select(intents.c.id)
        .where(intents.c.connection == bindparam("connection"))
        .limit(1)
        .exists()
        .label("wrote")
    )
    if not with_meetings:
        stmt = sa_select(wrote)
    else:
        meetings = MeetingRow.__table__  # type: ignore[attr-defined]
        one = sa_select(literal(1).label("one")).subquery("one")
        near = and_(
            one_of(dialect, meetings.c.attendee_email, "emails"),
            meetings.c.start >= bindparam("earliest", type_=meetings.c.start.type),
            meetings.c.start <= bindparam("latest", type_=meetings.c.start.type),
        )
        stmt = sa_select(
            wrote,
            meetings.c.id,
            meetings.c.attendee_email,
            meetings.c.start,
            meetings.c.hosts,
            meetings.c.status,
        ).select_from(one.outerjoin(meetings, near))
    _STATEMENTS[(dialect, with_meetings)] = stmt
    return stmt


def _candidates(session: Session, connection: str, rows: list[Any]) -> list[Candidate]:
    """The candidate meetings of `rows` (id, attendee_email, start, hosts, status), with their live
    links at `connection`: one more query, only when there are some."""
    if not rows:
        return []
    here: dict[str, list[str]] = {}
    pending: dict[str, bool] = {}
    links = select(LinkRow.meeting_id, LinkRow.external_id, LinkRow.observed).where(
        among(session, LinkRow.meeting_id, {row[0] for row in rows}),
        LinkRow.connection == connection,
        col(LinkRow.missing).is_(False),
        LinkRow.content_hash != _SUPERSEDED,
    )
    for meeting_id, external_id, observed in session.exec(links):
        here.setdefault(meeting_id, []).append(external_id)
        provisional = isinstance(observed, dict) and observed.get("status") == MeetingStatus.PENDING.value
        pending[meeting_id] = pending.get(meeting_id, True) and provisional
    return [
        Candidate(
            meeting_id=mid,
            attendee_email=email,
            start=start,
            hosts=tuple(hosts or ()),
            status=status,
            here=tuple(sorted(here.get(mid, ()))),
            here_pending=pending.get(mid, False),
        )
        for mid, email, start, hosts, status in rows
    ]


def audit(
    session: Session,
    *,
    meeting_id: str,
    action: str,
    actor: str,
    now: datetime,
    connection: str | None = None,
    external_id: str | None = None,
    **detail: object,
) -> None:
    """One entry in a meeting's audit trail (`meetings show` lists them)."""
    session.add(
        AuditRow(
            meeting_id=meeting_id,
            action=action,
            actor=actor,
            connection=connection,
            external_id=external_id,
            detail=detail or None,
            at=now,
        )
    )


def _ambiguous(
    session: Session, connection: str, record: SourceRecord, found: Ambiguity, now: datetime
) -> None:
    log.warning(
        "%s %s matches %d meetings by %s (%s): linking none; it is a meeting of its own. Join it by hand "
        "with `bookingsync meetings link`",
        connection,
        record.external_id,
        len(found.meeting_ids),
        found.rule,
        ", ".join(found.meeting_ids),
    )
    metrics.IDENTITY.labels(connection, AMBIGUOUS).inc()
    for meeting_id in found.meeting_ids:
        audit(
            session,
            meeting_id=meeting_id,
            action=AMBIGUOUS,
            actor="identity",
            now=now,
            connection=connection,
            external_id=record.external_id,
            rule=found.rule,
            candidates=list(found.meeting_ids),
        )


def match_unlinked(
    session: Session,
    connection: str,
    records: Sequence[SourceRecord],
    *,
    rules: Rules | None = None,
    now: datetime | None = None,
) -> dict[str, Match]:
    """Matches for records of `connection` whose (connection, external_id) is not linked yet,
    keyed by external id. Records without a match are left out (they are new meetings).

    `rules` defaults to the process's configured ones; `now` stamps the audit of an ambiguity
    (default: the newest `source_updated_at` of the page, else the wall clock is not read: the
    ambiguity is stamped with the record's start)."""
    if not records:
        return {}
    rules = rules or _rules
    out: dict[str, Match] = {}
    # The candidate meetings of every record, before the intents took some: a record the intents
    # match is not looked for among them (the rules below take the rest only).
    wrote, meeting_rows = _look_up(
        session, connection, records, rules.tolerance if rules.attendee_start else None
    )
    if wrote:
        rows = intent_store.candidates(
            session,
            connection,
            ids={r.external_id for r in records},
            references={r.reference for r in records if r.reference},
            starts={r.meeting.start for r in records},
        )
        intents = [intent_store.value(row) for row in rows]
        for record in records if intents else ():
            match = choose(record, intents)
            if match is not None:
                out[record.external_id] = match
    rest = [r for r in records if r.external_id not in out]
    if not rest or not rules.attendee_start:
        return out
    by_email: dict[str | None, list[Candidate]] = {}
    for candidate in _candidates(session, connection, meeting_rows):
        by_email.setdefault(candidate.attendee_email, []).append(candidate)
    for record in rest if by_email else ():
        found = choose_by_rules(record, by_email.get(record.meeting.attendee.email, ()), rules)
        if isinstance(found, Ambiguity):
            stamp = now or record.source_updated_at or record.meeting.start
            _ambiguous(session, connection, record, found, stamp)
        elif found is not None:
            out[record.external_id] = found
            metrics.IDENTITY.labels(connection, found.rule).inc()
    return out
