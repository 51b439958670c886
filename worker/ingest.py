"""From raw provider records to stored meetings: a page of a poll, or a webhook receipt.

A record that cannot be normalised is quarantined with its reason and the rest goes on; the
page's cursor is saved in the same transaction as its records, so it never passes one that
was not stored (a quarantined record counts as stored: it is kept, visibly). The records that
pass are applied as one page (worker/ingest_store.py: one load, pure decisions, bulk writes).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import Session, select

from bookingsync.adapters.base import Adapter, Page, RawRecord
from bookingsync.models.errors import NormaliseError
from bookingsync.models.tables import QuarantineRow, ReceiptRow
from bookingsync.worker import identity, metrics, quarantine, store
from bookingsync.worker.db import transaction
from bookingsync.worker.ingest_fingerprint import raw_key
from bookingsync.worker.ingest_plan import Incoming
from bookingsync.worker.ingest_store import apply_page as apply_incoming
from bookingsync.worker.ingest_unchanged import Loaded, touch_unchanged
from bookingsync.worker.lifecycle import Backfill
from bookingsync.worker.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass
class IngestResult:
    applied: int = 0
    changed: int = 0
    quarantined: int = 0
    swept: int = 0
    stale: int = 0  # older snapshots than the ones applied: counted on their links and ignored
    events: list[str] = field(default_factory=list)


def ingest_records(
    session: Session,
    adapter: Adapter,
    connection: str,
    raws: list[RawRecord],
    *,
    source: str,
    now: datetime,
    grace: timedelta,
    result: IngestResult,
    open_quarantine: bool = True,
    backfill: Backfill = Backfill.UPCOMING,
    delivered_at: datetime | None = None,
) -> None:
    """Normalise every record (quarantining the ones that fail), then apply them, successors of a
    moved booking first, so the old booking's cancellation in the same read reads as the move it
    was. `open_quarantine=False` (no open items on the connection) skips retiring quarantine items.
    `delivered_at` (a webhook's receipt time) orders records that carry no updated_at.

    A polled record read again unchanged only has its link's `last_seen_at` set, before anything is
    normalised (worker/ingest_unchanged.py)."""
    keys = [raw_key(adapter.provider, raw.payload, raw.external_id, raw.scope) for raw in raws]
    loaded = Loaded()  # the page's other links, when the touch could read them (PostgreSQL)
    unchanged = (
        touch_unchanged(session, connection=connection, raws=raws, keys=keys, now=now, loaded=loaded)
        if delivered_at is None
        else set()
    )
    result.applied += len(unchanged)
    normalised = []
    for position, (raw, key) in enumerate(zip(raws, keys, strict=True)):
        if position in unchanged:
            continue
        try:
            normalised.append((adapter.normalise(raw), raw, key))
            continue
        except NormaliseError as exc:
            reason = str(exc)
        except Exception as exc:  # a normaliser bug must not lose the record either
            log.exception("normalising a %s record failed unexpectedly", adapter.provider)
            reason = f"normaliser failed: {type(exc).__name__}: {exc}"
        quarantine.add(session, connection=connection, record=raw, reason=reason, source=source, now=now)
        result.quarantined += 1
        log.warning("quarantined a %s record from %s (%s): %s", adapter.provider, connection, source, reason)
    ordered = sorted(normalised, key=lambda item: item[0].supersedes is None)
    outcomes = apply_incoming(
        session,
        connection=connection,
        provider=adapter.provider,
        incoming=[
            Incoming(record=record, raw=raw.payload, delivered_at=delivered_at, raw_key=key)
            for record, raw, key in ordered
        ],
        now=now,
        grace=grace,
        backfill=backfill,
        loaded=loaded,
    )
    for (record, _, _), outcome in zip(ordered, outcomes, strict=True):
        if outcome.changed and open_quarantine:
            quarantine.supersede(session, connection=connection, external_id=record.external_id, now=now)
        result.applied += 1
        result.changed += int(outcome.changed)
        result.stale += int(outcome.stale)
        result.events.extend(outcome.events)


def apply_page(rt: Runtime, connection: str, adapter: Adapter, page: Page) -> IngestResult:
    result = IngestResult()
    now = rt.clock.now()
    with transaction(rt.engine) as session:
        ingest_records(
            session,
            adapter,
            connection,
            page.records,
            source="poll",
            now=now,
            grace=rt.grace,
            result=result,
            open_quarantine=quarantine.has_open(session, connection),
            backfill=rt.config.events.backfill,
        )
        if page.sweep is not None:
            swept = store.sweep(
                session,
                connection=connection,
                scope=page.sweep.scope,
                window_start=page.sweep.window_start,
                seen=page.sweep.seen,
                now=now,
                grace=rt.grace,
            )
            result.swept = len(swept)
            for applied in swept:
                result.events.extend(applied.events)
        store.save_cursor(session, connection, page.cursor, now)
    metrics.stale_snapshots(connection, "poll", result.stale)
    return result


def ingest_receipt(rt: Runtime, receipt_id: int) -> IngestResult | None:
    """Ingest one stored webhook delivery; None when it is not ours to do (done or re-leased)."""
    result = IngestResult()
    now = rt.clock.now()
    with transaction(rt.engine) as session:
        receipt = session.exec(
            select(ReceiptRow).where(ReceiptRow.id == receipt_id).with_for_update()
        ).first()
        if receipt is None or receipt.status != "leased":
            return None
        if rt.config.connection(receipt.connection) is None:
            receipt.status = "failed"
            receipt.error = f"connection {receipt.connection!r} is no longer configured"
            return result
        adapter = rt.adapter(receipt.connection)
        raws = [
            RawRecord(
                payload=item.get("payload"), external_id=item.get("external_id"), scope=item.get("scope")
            )
            for item in receipt.records or []
        ]
        ingest_records(
            session,
            adapter,
            receipt.connection,
            raws,
            source="webhook",
            now=now,
            grace=rt.grace,
            result=result,
            backfill=rt.config.events.backfill,
            delivered_at=receipt.received_at,
        )
        receipt.status = "done"
        receipt.processed_at = now
        receipt.lease_until = None
        connection = receipt.connection
    metrics.stale_snapshots(connection, "webhook", result.stale)
    return result


def replay_quarantined(rt: Runtime, item_id: int) -> str:
    """Normalise a quarantined record again (say, after a fix) and apply it if it now passes."""
    now = rt.clock.now()
    with transaction(rt.engine) as session:
        row = session.get(QuarantineRow, item_id)
        if row is None:
            return f"quarantine item {item_id} does not exist"
        if row.status != "open":
            return f"quarantine item {item_id} was already replayed"
        if rt.config.connection(row.connection) is None:
            return f"connection {row.connection!r} is not configured; cannot replay item {item_id}"
        adapter = rt.adapter(row.connection)
        raw = RawRecord(payload=row.raw, external_id=row.external_id, scope=row.scope)
        try:
            record = adapter.normalise(raw)
        except NormaliseError as exc:
            return f"item {item_id} still cannot be normalised: {exc}"
        match = identity.match_unlinked(session, row.connection, [record]).get(record.external_id)
        applied = store.apply_record(
            session,
            connection=row.connection,
            provider=adapter.provider,
            record=record,
            raw=row.raw,
            now=now,
            grace=rt.grace,
            backfill=rt.config.events.backfill,
            match=match,
        )
        row.status = "replayed"
        row.resolved_at = now
        return f"item {item_id} applied to meeting {applied.meeting_id}" + (
            f" ({', '.join(applied.events)})" if applied.events else ""
        )
