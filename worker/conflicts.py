"""The conflict policy at work: what ingest does with a read of a link that is not simply the
meeting's authority (a mirror, a peer, a stale record, an origin outrun on a bidirectional route).

`worker/policy.py` decides; this module reads what the decision needs (the meeting, the link's
last read, our last write there), stores the outcome in the caller's transaction, and reports a
conflict: a `meeting.sync_conflict` event (which the route fans out to the meeting's targets, so
`worker/reconcile.py` converges the target back), an audit entry, a metric and a WARNING.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from bookingsync.models.errors import ConfigError
from bookingsync.models.meeting import Meeting, MeetingStatus, SourceRecord
from bookingsync.models.tables import IntentRow, LinkRow, MeetingRow
from bookingsync.worker import identity, links, metrics, policy, precision, store
from bookingsync.worker.config import Config
from bookingsync.worker.lifecycle import Backfill, EventType
from bookingsync.worker.payloads import event_time, iso
from bookingsync.worker.policy import Role, Verdict

log = logging.getLogger(__name__)

PEER_RULES = frozenset({identity.ATTENDEE_START, identity.HAND})
# Pairs of connections a bidirectional route joins (set by the runtime, like identity's rules).
_both_ways: frozenset[frozenset[str]] = frozenset()
# A read of a target that disagrees with our own write made less than this ago may have been
# taken before the write landed (a poll page in flight, a late webhook; Meetergo's carry no
# stamp to tell): it is observed, not reported. The drift sweep reads the mirror again later.
_settle = timedelta(seconds=120)
# The adapter of a connection (set by the runtime): its booking shape says at which resolution
# a read of that end is compared with the meeting. None (no runtime): compared exactly.
_adapter_of: Callable[[str], Any] | None = None


def configure(cfg: Config, adapter_of: Callable[[str], Any] | None = None) -> None:
    global _both_ways, _settle, _adapter_of
    _adapter_of = adapter_of
    _both_ways = frozenset(
        frozenset((s, t))
        for r in cfg.routes
        if r.bidirectional
        for s in r.sources
        for t in r.targets
        if s != t
    )
    _settle = timedelta(seconds=cfg.mirroring.lease_seconds)


def resolution(connection: str) -> timedelta:
    """The finest step of time `connection` keeps (worker/precision.py): a target that stores
    whole minutes shows a meeting at 10:00:20 as 10:00, which is neither a change there nor a
    conflict."""
    if _adapter_of is None:
        return policy.EXACT
    try:
        adapter = _adapter_of(connection)
    except (KeyError, ConfigError):  # a link of a connection no longer configured (or unbuildable)
        return policy.EXACT
    return precision.shape_of(adapter).resolution


def bidirectional(a: str, b: str | None) -> bool:
    return b is not None and frozenset((a, b)) in _both_ways


def on_bidirectional_route(connection: str) -> bool:
    """Whether a bidirectional route joins `connection` to another: its origin reads go by the policy too."""
    return any(connection in pair for pair in _both_ways)


def role_of(link: LinkRow) -> Role:
    if link.mirrored:
        return Role.MIRROR
    return Role.PEER if link.rule in PEER_RULES else Role.ORIGIN


def observed(meeting: Meeting) -> dict[str, Any]:
    return meeting.model_dump(mode="json")


def _before(link: LinkRow) -> Meeting | None:
    try:
        return Meeting.model_validate(link.observed) if link.observed else None
    except ValueError:
        return None


def _last_write(session: Session, link: LinkRow) -> IntentRow | None:
    """Our newest write to this end of the link's meeting, if any."""
    query = (
        select(IntentRow)
        .where(IntentRow.meeting_id == link.meeting_id, IntentRow.connection == link.connection)
        .order_by(col(IntentRow.id).desc())
        .limit(1)
    )
    return session.exec(query).first()


def _ours(
    last: IntentRow | None, record: SourceRecord, now: datetime, step: timedelta = policy.EXACT
) -> bool:
    """Whether the record is what our newest write `last` asked of this end (our own echo), or may
    predate that write (it settled less than `_settle` ago)."""
    if last is None:
        return False
    return last.updated_at > now - _settle or _agrees(last, record, step)


def _agrees(last: IntentRow, record: SourceRecord, step: timedelta) -> bool:
    """Whether the record shows what our write `last` asked of this end."""
    if record.meeting.status is MeetingStatus.CANCELLED:
        return last.action == "cancel"
    if last.action == "cancel":
        return False
    # Our write asked for the meeting's exact times; the end keeps them at its own resolution.
    return not (
        policy.differs("start", last.start, record.meeting.start, step)
        or policy.differs("end", last.end, record.meeting.end, step)
    )


def _predates_ours(last: IntentRow | None, record: SourceRecord, step: timedelta) -> bool:
    """Whether a record judged ours only by time (read within the settle window) contradicts our
    newest write: then it was taken before that write landed and must not undo what the write
    recorded on the link (a pre-cancel page read after our cancel would mark the mirror live
    again, and the next converge would cancel it a second time)."""
    return last is not None and last.state == "done" and not _agrees(last, record, step)


def on_read(
    session: Session,
    link: LinkRow,
    record: SourceRecord,
    raw: Any,
    now: datetime,
    grace: timedelta,
    backfill: Backfill,
) -> store.Applied | None:
    """What a read of an existing `link` does; None when it applies whole (the origin: the
    store goes on as before). Called by `store.apply_record` for a record whose content changed."""
    role = role_of(link)
    stamp = record.source_updated_at
    if link.source_updated_at is not None and stamp is not None and stamp < link.source_updated_at:
        link.last_seen_at = now
        log.info(
            "%s %s: a record stamped %s is older than the one held (%s); ignored",
            link.connection,
            link.external_id,
            iso(stamp),
            iso(link.source_updated_at),
        )
        return store.Applied(meeting_id=link.meeting_id, changed=False)
    origin = None if role is Role.ORIGIN else store.origin_connection(session, link.meeting_id)
    both = (
        bidirectional(link.connection, origin)
        if role is not Role.ORIGIN
        else any(link.connection in pair for pair in _both_ways)
    )
    if role is Role.ORIGIN and not both:
        return None
    row = session.exec(select(MeetingRow).where(MeetingRow.id == link.meeting_id).with_for_update()).one()
    meeting = store.meeting_of(row)
    fields = policy.MIRRORED if role is Role.MIRROR else policy.COMPARED
    step = resolution(link.connection)
    edits = policy.edits(_before(link), record.meeting, meeting, fields, step)
    last = _last_write(session, link) if edits and role is Role.MIRROR else None
    read = policy.Read(
        role=role,
        stamp=stamp,
        link_stamp=link.source_updated_at,
        meeting_stamp=row.source_updated_at,
        edits=edits,
        bidirectional=both,
        ours=_ours(last, record, now, step),
    )
    verdict = policy.decide(read)
    if verdict is Verdict.APPLY:
        return None
    if verdict is Verdict.CONFLICT and role is Role.ORIGIN:
        edits = tuple(
            name
            for name in policy.COMPARED
            if policy.differs(name, policy.view(record.meeting)[name], policy.view(meeting)[name], step)
        )
    if verdict is Verdict.OBSERVE and read.ours and _predates_ours(last, record, step):
        link.last_seen_at = now
        log.info(
            "%s %s: a read that contradicts our newest write there, within its settle window; "
            "taken before the write, so ignored",
            link.connection,
            link.external_id,
        )
        return store.Applied(meeting_id=link.meeting_id, changed=False)
    _observe(link, record, raw, now, mirrored=link.mirrored)
    if verdict is Verdict.OBSERVE:
        return store.Applied(meeting_id=link.meeting_id, changed=False)
    if verdict is Verdict.MERGE:
        merged = policy.merge(meeting, record.meeting, edits)
        events = store.write_plan(session, row, store.state_of(row), merged, now, grace, backfill=backfill)
        row.source_updated_at = stamp or row.source_updated_at
        identity.audit(
            session,
            meeting_id=row.id,
            action="merged",
            actor="policy",
            now=now,
            connection=link.connection,
            external_id=link.external_id,
            fields=list(edits),
            stamp=iso(stamp),
            role=role.value,
        )
        log.info(
            "meeting %s takes %s from %s %s (%s, newer)",
            row.id,
            ", ".join(edits),
            link.connection,
            link.external_id,
            role.value,
        )
        return store.Applied(meeting_id=row.id, changed=True, events=events)
    report(
        session,
        row,
        link,
        record.meeting,
        edits,
        now,
        why="one-way route: the source is authoritative"
        if not both
        else "the meeting's content is newer or equally new (the origin wins ties)",
    )
    return store.Applied(meeting_id=row.id, changed=False, events=(EventType.SYNC_CONFLICT.value,))


def _observe(link: LinkRow, record: SourceRecord, raw: Any, now: datetime, *, mirrored: bool) -> None:
    if mirrored:
        store.observe(link, record, raw, now)
        return
    link.content_hash = record.meeting.content_hash()
    link.raw = raw
    link.scope = record.scope or link.scope
    link.source_updated_at = record.source_updated_at
    link.start, link.end = record.meeting.start, record.meeting.end
    link.missing = record.meeting.status is MeetingStatus.CANCELLED
    link.observed = observed(record.meeting)
    link.last_seen_at = now


def report(
    session: Session,
    row: MeetingRow,
    link: LinkRow,
    there: Meeting,
    fields: tuple[str, ...],
    now: datetime,
    *,
    why: str,
) -> None:
    """A change at `link` the policy did not take: event, audit, metric, WARNING. The event is
    routed to the meeting's targets (reconcile.MIRRORED_EVENTS), which converges this one back."""
    held, seen = policy.view(store.meeting_of(row)), policy.view(there)
    changes = {name: {"old": _json(held[name]), "new": _json(seen[name])} for name in fields}
    links.note_event(
        session,
        row,
        EventType.SYNC_CONFLICT,
        f"{link.id}:{there.content_hash()[:16]}",
        now,
        {
            "changes": changes,
            "conflict": {
                "connection": link.connection,
                "external_id": link.external_id,
                "resolution": "converged back to the meeting",
                "reason": why,
            },
        },
    )
    identity.audit(
        session,
        meeting_id=row.id,
        action="sync_conflict",
        actor="policy",
        now=now,
        connection=link.connection,
        external_id=link.external_id,
        changes=changes,
        reason=why,
    )
    metrics.SYNC_CONFLICTS.labels(link.connection).inc()
    log.warning(
        "meeting %s: %s %s was changed there (%s) and %s; converging it back",
        row.id,
        link.connection,
        link.external_id,
        ", ".join(fields),
        why,
    )


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return event_time(value)  # it goes into an event: UTC, milliseconds, Z
    return list(value) if isinstance(value, tuple) else value
