"""The I/O half of ingest: load a page's state in one go, plan it (worker/ingest_plan.py), write it in bulk.

Per page, in the caller's transaction: one query for the page's links, one for their meetings
(worker/ingest_load.py; both locked on PostgreSQL, SQLite's `BEGIN IMMEDIATE` already serialises
writers), the identity matches for records not linked yet, the records that go apart (echoes of
our writes, issue 16's per-record records: worker/ingest_apart.py), then Core statements
(worker/ingest_write.py, their texts built once in worker/ingest_statements.py): new meetings,
new links, changed meetings and links, the cancelled timers and the events.

Concurrent first sight is an upsert (issue 13). Two transactions that see a new booking at once
(a webhook and a poll) both plan a new meeting; the links go in with `INSERT … ON CONFLICT DO
NOTHING`, which on PostgreSQL waits for the other transaction and then inserts nothing. The
loser rolls back to a savepoint taken before its writes, re-reads the page (now seeing the
winner's link) and plans again: one meeting, one link, one `booked`, no error, the page commits.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlmodel import Session

from bookingsync.worker import identity, metrics, table_stats
from bookingsync.worker.ingest_apart import apply_per_record, link_echoes, per_record
from bookingsync.worker.ingest_load import load_links, load_meetings
from bookingsync.worker.ingest_plan import Incoming, Outcome, PagePlan, meetings_needed, new_id, plan_page
from bookingsync.worker.ingest_write import LostFirstSight, write_rows
from bookingsync.worker.lifecycle import Backfill

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from bookingsync.worker.identity import Match
    from bookingsync.worker.ingest_unchanged import Loaded

log = logging.getLogger(__name__)

# A page that loses the first-sight race for one link is planned again, with the winners' links
# loaded, so each attempt makes progress. A poll page of many new bookings whose webhooks arrive one
# by one can lose once per booking (the soak at 5 changes/s lost three in a row and logged an
# error), so the page is planned again up to ten times before it is handed back to the broker.
FIRST_SIGHT_ATTEMPTS = 10


class FirstSightContended(RuntimeError):
    """Other writers kept creating the page's new bookings first; the page is retried later."""


def _write(session: Session, plan: PagePlan, now: datetime) -> bool:
    """Write the plan; False (nothing written) when another writer linked one of its new bookings first."""
    plan.fingerprint_links()
    events = plan.render()
    if not plan.new_links:  # nothing to race for: no savepoint needed
        write_rows(session, plan, events, now)
        return True
    if session.get_bind().dialect.name == "postgresql":
        # The savepoint is left to end with the transaction: its RELEASE was one more round trip
        # of a page's few. A lost race rolls back to it; planned again, the page takes a new one.
        conn = session.connection()
        conn.exec_driver_sql("SAVEPOINT ingest_page")
        try:
            write_rows(session, plan, events, now)
        except LostFirstSight:
            conn.exec_driver_sql("ROLLBACK TO SAVEPOINT ingest_page")
            return False
        return True
    try:
        with session.begin_nested():
            write_rows(session, plan, events, now)
    except LostFirstSight:
        return False
    return True


def apply_page(
    session: Session,
    *,
    connection: str,
    provider: str,
    incoming: Sequence[Incoming],
    now: datetime,
    grace: timedelta,
    backfill: Backfill = Backfill.UPCOMING,
    matches: dict[str, Match] | None = None,
    loaded: Loaded | None = None,
) -> list[Outcome]:
    """Apply a page of normalised records in the caller's transaction; one outcome per record, in order.

    `matches` overrides the identity look-up (a caller that made it already); `loaded`, the page's
    links as the touch of its unchanged records read them (worker/ingest_unchanged.py), spares
    reading them again when they are all the page needs."""
    if not incoming:
        return []
    records = [item.record for item in incoming]
    wanted = {r.external_id for r in records} | {r.supersedes for r in records if r.supersedes}
    if loaded is not None and wanted <= loaded.ids:
        links = {eid: link for eid, link in loaded.links.items() if eid in wanted}
    else:
        links = load_links(session, connection, wanted)
    if matches is None:
        unlinked: dict[str, Any] = {}
        for r in records:
            if r.external_id not in links:
                unlinked.setdefault(r.external_id, r)
        # Issue 15/16: a record no link knows yet may be the echo of a write of ours, or a meeting
        # already known through another provider.
        matches = identity.match_unlinked(session, connection, list(unlinked.values())) if unlinked else {}
    else:
        matches = {eid: m for eid, m in matches.items() if eid not in links}
    outcomes: dict[int, Outcome] = {}
    echoed = link_echoes(session, incoming, matches, connection=connection, provider=provider, now=now)
    for position in echoed:
        item = incoming[position]
        outcomes[position] = Outcome(meeting_id=matches[item.record.external_id].meeting_id, changed=False)
    others = {eid: m for eid, m in matches.items() if m.intent is None}
    one_by_one = per_record(incoming, links, others, connection, echoed)
    if one_by_one:
        outcomes.update(
            apply_per_record(
                session,
                incoming,
                one_by_one,
                others,
                connection=connection,
                provider=provider,
                now=now,
                grace=grace,
                backfill=backfill,
            )
        )
    apart = echoed | one_by_one
    rest = [item for position, item in enumerate(incoming) if position not in apart]
    for attempt in range(FIRST_SIGHT_ATTEMPTS):
        if apart or attempt:
            links = load_links(session, connection, wanted)
        meetings = load_meetings(session, meetings_needed(rest, links, others))
        plan = plan_page(
            rest,
            links=links,
            meetings=meetings,
            matches=others,
            connection=connection,
            provider=provider,
            now=now,
            grace=grace,
            backfill=backfill,
            new_id=new_id,
        )
        if _write(session, plan, now):
            table_stats.links_created(session, len(plan.new_links))
            break
        log.info(
            "%s: another writer linked a new booking of this page first; planning the page again", connection
        )
    else:
        raise FirstSightContended(
            f"{connection}: other writers created this page's new bookings first "
            f"{FIRST_SIGHT_ATTEMPTS} times in a row; the page will be retried"
        )
    if apart:
        # link_echo's and apply_one's ORM objects may be older than what the bulk statements wrote.
        session.expire_all()
    for meeting_id, end, skipped in plan.skipped:
        # Late first sight beyond the late window: history, but never silently (README, Events).
        metrics.late_timers_skipped(skipped)
        log.info(
            "meeting %s was first seen %s after its end (%s), beyond the late window of %s: %s not sent",
            meeting_id,
            now - end,
            end.isoformat(),
            grace,
            " and ".join(t.value for t in skipped),
        )
    if plan.stale:
        log.info("%s: %d older snapshot(s) ignored (a newer one was already applied)", connection, plan.stale)
    rest_outcomes = iter(plan.outcomes)
    return [
        outcomes[position] if position in outcomes else next(rest_outcomes)
        for position in range(len(incoming))
    ]
