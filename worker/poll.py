"""One poll of one connection: read pages from the adapter, store each with its cursor.

A lease per connection keeps two workers from polling the same connection at once (a slow poll
and the next tick). A provider failure ends the poll where it is; the pages already stored keep
their cursor, so the next tick resumes there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from bookingsync.adapters.base import Capability, ReadContext
from bookingsync.models.errors import ProviderError
from bookingsync.worker import leases, metrics, store
from bookingsync.worker.db import transaction
from bookingsync.worker.ingest import apply_page
from bookingsync.worker.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass
class PollResult:
    connection: str
    ran: bool = False
    pages: int = 0
    records: int = 0
    quarantined: int = 0
    events: list[str] = field(default_factory=list)
    error: str | None = None


@metrics.timed_poll
def poll(rt: Runtime, connection_id: str) -> PollResult:
    result = PollResult(connection=connection_id)
    conn = rt.config.connection(connection_id)
    if conn is None or not conn.enabled:
        result.error = f"connection {connection_id!r} is not configured or disabled"
        return result
    adapter = rt.adapter(connection_id)
    if not adapter.capabilities & {Capability.LIST_CHANGES, Capability.LOOKUP_BY_EMAIL}:
        return result
    lease_name, lease_seconds = f"poll:{connection_id}", rt.config.scheduler.lease_seconds
    if not leases.acquire(rt.engine, lease_name, rt.holder, rt.clock.now(), lease_seconds):
        return result  # another worker is polling it right now
    result.ran = True
    try:
        now = rt.clock.now()
        with transaction(rt.engine) as session:
            cursor = store.get_cursor(session, connection_id)
            emails = frozenset()
            if Capability.LOOKUP_BY_EMAIL in adapter.capabilities:
                emails = store.watched_emails(session, now - timedelta(days=conn.lookback_days))
        for page in adapter.read(cursor, ReadContext(now=now, watch_emails=emails)):
            applied = apply_page(rt, connection_id, adapter, page)
            result.pages += 1
            result.records += len(page.records)
            result.quarantined += applied.quarantined
            result.events.extend(applied.events)
            leases.acquire(rt.engine, lease_name, rt.holder, rt.clock.now(), lease_seconds)
    except ProviderError as exc:
        result.error = str(exc)
        log.warning("poll of %s stopped after %d page(s): %s", connection_id, result.pages, exc)
    finally:
        leases.release(rt.engine, lease_name, rt.holder)
    return result
