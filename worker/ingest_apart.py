"""The records of a page of ingest that do not go through its bulk plan (worker/ingest_store.py).

Link records that echo a write of ours (issue 15, worker/identity.py) are consumed by
`store.link_echo`; the records issue 16's conflict policy speaks for go one by one through
`store.apply_one`, each booking's records in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlmodel import Session

from bookingsync.worker.ingest_plan import Incoming, LinkState, Outcome
from bookingsync.worker.lifecycle import Backfill

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from bookingsync.worker.identity import Match


def link_echoes(
    session: Session,
    incoming: Sequence[Incoming],
    matches: dict[str, Match],
    *,
    connection: str,
    provider: str,
    now: datetime,
) -> set[int]:
    """Link records that echo a write of ours (worker/identity.py) through `store.link_echo`;
    the positions of the records so consumed (the first of each id)."""
    from bookingsync.worker.store import link_echo

    done: set[int] = set()
    seen: set[str] = set()
    for position, item in enumerate(incoming):
        eid = item.record.external_id
        match = matches.get(eid)
        if match is None or match.intent is None or eid in seen:
            continue
        seen.add(eid)
        link_echo(
            session,
            match,
            connection=connection,
            provider=provider,
            record=item.record,
            raw=item.raw,
            now=now,
        )
        done.add(position)
    if done:
        session.flush()
    return done


def per_record(
    incoming: Sequence[Incoming],
    links: dict[str, LinkState],
    matches: dict[str, Match],
    connection: str,
    skip: set[int],
) -> set[int]:
    """Positions of the records issue 16 speaks for, which go through `store.apply_one`: a read of
    a link that is not a plain origin (a mirror, a peer) or on a bidirectional route, where
    `conflicts.on_read` decides; an identity match without an intent (a peer link, or a
    double-opt-in successor). Decided per external id, so one booking's records stay in order."""
    from bookingsync.worker import conflicts

    both = conflicts.on_bidirectional_route(connection)
    ids: set[str] = set()
    for item in incoming:
        eid = item.record.external_id
        link = links.get(eid)
        if link is not None:
            if link.mirrored or link.rule in conflicts.PEER_RULES or both:
                ids.add(eid)
        elif (match := matches.get(eid)) is not None and match.intent is None:
            ids.add(eid)
    return {
        position
        for position, item in enumerate(incoming)
        if position not in skip and item.record.external_id in ids
    }


def apply_per_record(
    session: Session,
    incoming: Sequence[Incoming],
    positions: set[int],
    matches: dict[str, Match],
    *,
    connection: str,
    provider: str,
    now: datetime,
    grace: timedelta,
    backfill: Backfill,
) -> dict[int, Outcome]:
    from bookingsync.worker import store

    chosen = [incoming[position] for position in sorted(positions)]
    ids = {item.record.external_id for item in chosen} | {
        item.record.supersedes for item in chosen if item.record.supersedes
    }
    ids |= {m.supersedes for eid, m in matches.items() if m.supersedes and eid in ids}
    known = store.lock_links(session, connection, ids)
    out: dict[int, Outcome] = {}
    for position in sorted(positions):
        item = incoming[position]
        eid = item.record.external_id
        applied = store.apply_one(
            session,
            connection=connection,
            provider=provider,
            record=item.record,
            raw=item.raw,
            now=now,
            grace=grace,
            known=known,
            backfill=backfill,
            match=matches.get(eid) if known.get(eid) is None else None,
            delivered_at=item.delivered_at,
        )
        out[position] = Outcome(
            meeting_id=applied.meeting_id, changed=applied.changed, events=applied.events, stale=applied.stale
        )
    session.flush()
    return out
