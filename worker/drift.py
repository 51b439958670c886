"""Drift repair: re-read the live mirrors where the target can be read by id, and converge them.

A booking moved or deleted by hand at a route target sends us nothing when the target has no
webhooks (LeanData) or when we do not poll it. Every `drift.interval_seconds` the scheduler's
leader takes, per route target whose adapter reads one booking by id (`get_meeting`: LeanData
`GET /v1/meeting/:id`, Meetergo `GET /v4/appointment/{id}`), the `drift.batch_size` live mirrors
of upcoming meetings seen least recently, and for each:

* reads it and ingests it like any read (worker/conflicts.py applies the route's policy: a change
  made there is a `meeting.sync_conflict`, or merged on a bidirectional route);
* a booking the provider no longer has (404) is a hand deletion: the mirror link is marked missing
  and reported the same way;
* converges the mirror at once (worker/reconcile.py): moved back, booked again, or left alone.

Rate limits: a batch per target per sweep, read one at a time through the adapter's own pacing; a
429 ends that target's sweep (the rest of its budget is the polls'). Targets that cannot be read by
id (RocketLead: no read endpoint; HubSpot: its reads arrive by polling the CRM) are repaired
through the reads that already happen, and counted here as `unreadable`.
"""

from __future__ import annotations

import logging
from collections import Counter

from sqlmodel import col, select

from bookingsync.adapters.base import Adapter, Lookup, RawRecord
from bookingsync.models.errors import ProviderError, ProviderNotFound, RateLimited
from bookingsync.models.meeting import MeetingStatus
from bookingsync.models.tables import LinkRow, MeetingRow
from bookingsync.worker import conflicts, ingest, metrics, reconcile, store
from bookingsync.worker.backfill import routes_by_target
from bookingsync.worker.db import transaction
from bookingsync.worker.runtime import Runtime

log = logging.getLogger(__name__)


def _due(rt: Runtime, target: str, limit: int) -> list[tuple[str, str]]:
    now = rt.clock.now()
    query = (
        select(LinkRow.meeting_id, LinkRow.external_id)
        .join(MeetingRow, col(MeetingRow.id) == col(LinkRow.meeting_id))
        .where(
            LinkRow.connection == target,
            col(LinkRow.mirrored).is_(True),
            col(LinkRow.missing).is_(False),
            LinkRow.content_hash != store.SUPERSEDED_HASH,
            col(MeetingRow.booked).is_(True),
            col(MeetingRow.deleted).is_(False),
            col(MeetingRow.end) > now,
        )
        .order_by(col(LinkRow.last_seen_at), col(LinkRow.id))
        .limit(limit)
    )
    with transaction(rt.engine) as session:
        return [(m, e) for m, e in session.exec(query)]


def _gone(rt: Runtime, target: str, meeting_id: str, external_id: str) -> None:
    """The target no longer has our booking: deleted by hand. Reported, then booked again."""
    now = rt.clock.now()
    with transaction(rt.engine) as session:
        link = store.lock_links(session, target, {external_id})[external_id]
        row = session.exec(select(MeetingRow).where(MeetingRow.id == meeting_id).with_for_update()).first()
        if link is None or row is None or link.missing:
            return
        link.missing, link.last_seen_at = True, now
        cancelled = store.meeting_of(row).model_copy(update={"status": MeetingStatus.CANCELLED})
        conflicts.report(
            session,
            row,
            link,
            cancelled,
            ("status",),
            now,
            why=f"{target} no longer has the booking (deleted there)",
        )


def check(rt: Runtime, target: str, meeting_id: str, external_id: str, adapter: Adapter) -> str:
    """Re-read one mirror and converge it; the outcome for the metric."""
    if not isinstance(adapter, Lookup):  # sweep passes only those; a target that cannot be re-read
        return "unreadable"
    try:
        raw: RawRecord = adapter.get_meeting(external_id)
    except ProviderNotFound:
        _gone(rt, target, meeting_id, external_id)
        outcome = "repaired"
    else:
        result = ingest.IngestResult()
        with transaction(rt.engine) as session:
            ingest.ingest_records(
                session,
                adapter,
                target,
                [raw],
                source="drift",
                now=rt.clock.now(),
                grace=rt.grace,
                result=result,
                backfill=rt.config.events.backfill,
            )
        outcome = "repaired" if "meeting.sync_conflict" in result.events else "in_step"
    done = reconcile.converge(rt, meeting_id, target)
    if done.status != "succeeded":
        log.warning("drift repair of meeting %s at %s: %s (%s)", meeting_id, target, done.status, done.detail)
    return outcome


def sweep(rt: Runtime) -> Counter[str]:
    """One sweep over every route target; counts of outcomes (also exported as metrics)."""
    counts: Counter[str] = Counter()
    batch = rt.config.drift.batch_size
    for target in routes_by_target(rt):
        adapter = rt.adapter(target)
        if not isinstance(adapter, Lookup):
            counts["unreadable"] += 1
            metrics.DRIFT.labels(target, "unreadable").inc()
            continue
        for meeting_id, external_id in _due(rt, target, batch):
            try:
                outcome = check(rt, target, meeting_id, external_id, adapter)
            except RateLimited as exc:
                log.info(
                    "drift sweep of %s stops at its rate limit (%s); the next sweep goes on", target, exc
                )
                metrics.DRIFT.labels(target, "rate_limited").inc()
                break
            except ProviderError as exc:
                log.warning("drift check of meeting %s at %s failed: %s", meeting_id, target, exc)
                outcome = "error"
            counts[outcome] += 1
            metrics.DRIFT.labels(target, outcome).inc()
    return counts
