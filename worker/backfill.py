"""Backfill a route: book the upcoming meetings its sources already had when it was added.

A route mirrors a meeting when one of its lifecycle events is published; meetings that existed
before the route have no event coming. `bookingsync routes sync` (and the scheduler, every
`drift.interval_seconds`, a batch at a time) walks the sources' upcoming meetings in (start, id)
order and converges each at each target (worker/reconcile.py), saving the position after every
meeting in `route_syncs`: a run stopped anywhere resumes after the last meeting done. Exactly
once: converging a meeting already in step writes nothing, and the intents (worker/intents.py)
keep a retried step from booking twice.

A position belongs to one route's sources: when they change, the walk starts over (what is
in step costs a read of our own tables, no provider call).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, func, select, tuple_

from bookingsync.models.tables import LinkRow, MeetingRow, RouteSyncRow
from bookingsync.worker import reconcile
from bookingsync.worker.conflicts import PEER_RULES
from bookingsync.worker.db import transaction
from bookingsync.worker.runtime import Runtime

log = logging.getLogger(__name__)
# Meetings read per query while walking; each is converged (and its position saved) on its own.
PAGE = 200


@dataclass
class Progress:
    target: str
    total: int = 0
    done: int = 0
    converged: int = 0
    failed: int = 0
    finished: bool = False


def _upcoming(sources: tuple[str, ...], now: datetime):
    """Live, upcoming meetings first seen at one of `sources` (not peers or mirrors there)."""
    origin = select(LinkRow.meeting_id).where(
        col(LinkRow.connection).in_(sources),
        col(LinkRow.mirrored).is_(False),
        ~col(LinkRow.rule).in_(sorted(PEER_RULES)) | col(LinkRow.rule).is_(None),
    )
    return (
        col(MeetingRow.id).in_(origin),
        col(MeetingRow.booked).is_(True),
        col(MeetingRow.deleted).is_(False),
        col(MeetingRow.end) > now,
    )


def _position(session: Session, target: str, sources: str, now: datetime) -> RouteSyncRow:
    row = session.exec(select(RouteSyncRow).where(RouteSyncRow.target == target).with_for_update()).first()
    if row is None:
        row = RouteSyncRow(target=target, sources=sources, started_at=now)
        session.add(row)
    elif row.sources != sources:  # the route changed: walk again from the start
        row.sources, row.after_start, row.after_id, row.done, row.started_at = sources, None, None, 0, now
        row.finished_at = None
    return row


def sync_target(
    rt: Runtime,
    target: str,
    sources: tuple[str, ...],
    *,
    limit: int | None = None,
    restart: bool = False,
    again: bool = True,
    on_step: Callable[[Progress], None] | None = None,
) -> Progress:
    """Converge up to `limit` meetings (all when None) of `sources` at `target`, from where the
    last run stopped (`restart`: from the beginning). A finished walk is walked again when
    `again` (a person asked); the scheduler's ticks (`again=False`) leave it finished."""
    key = ",".join(sorted(sources))
    progress = Progress(target=target)
    now = rt.clock.now()
    with transaction(rt.engine) as session:
        row = _position(session, target, key, now)
        if row.finished_at is not None and not (again or restart):
            progress.done = progress.total = row.done
            progress.finished = True
            return progress
        if restart or row.finished_at is not None:
            row.after_start, row.after_id, row.done, row.started_at, row.finished_at = (
                None,
                None,
                0,
                now,
                None,
            )
        after = (row.after_start, row.after_id)
        progress.done = row.done
        progress.total = (
            row.done
            + session.exec(
                select(func.count()).select_from(MeetingRow).where(*_upcoming(sources, now), *_after(after))
            ).one()
        )
    while limit is None or progress.converged + progress.failed < limit:
        with transaction(rt.engine) as session:
            page = list(
                session.exec(
                    select(MeetingRow.id, MeetingRow.start)
                    .where(*_upcoming(sources, now), *_after(after))
                    .order_by(col(MeetingRow.start), col(MeetingRow.id))
                    .limit(PAGE)
                )
            )
        if not page:
            with transaction(rt.engine) as session:
                _position(session, target, key, now).finished_at = rt.clock.now()
            progress.finished = True
            break
        for meeting_id, start in page:
            if limit is not None and progress.converged + progress.failed >= limit:
                break
            outcome = reconcile.converge(rt, meeting_id, target)
            if outcome.status == "succeeded":
                progress.converged += 1
            else:
                progress.failed += 1  # retry or dead: the intents say why (`mirrors show`); the walk goes on
                log.warning(
                    "backfill of meeting %s into %s: %s (%s)",
                    meeting_id,
                    target,
                    outcome.status,
                    outcome.detail,
                )
            after = (start, meeting_id)
            progress.done += 1
            with transaction(rt.engine) as session:
                row = _position(session, target, key, now)
                row.after_start, row.after_id, row.done = start, meeting_id, progress.done
            if on_step is not None:
                on_step(progress)
    return progress


def _after(position: tuple[datetime | None, str | None]) -> tuple:
    start, meeting_id = position
    if start is None or meeting_id is None:
        return ()
    return (tuple_(col(MeetingRow.start), col(MeetingRow.id)) > tuple_(start, meeting_id),)


def routes_by_target(rt: Runtime) -> dict[str, tuple[str, ...]]:
    """Every route target with all the sources that feed it (both ways for bidirectional routes)."""
    out: dict[str, set[str]] = {}
    for route in rt.config.routes:
        pairs = [(t, route.sources) for t in route.targets]
        if route.bidirectional:
            pairs += [(s, route.targets) for s in route.sources]
        for target, sources in pairs:
            out.setdefault(target, set()).update(s for s in sources if s != target)
    return {target: tuple(sorted(sources)) for target, sources in sorted(out.items())}
