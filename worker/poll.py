"""One read of one connection: pages from the adapter, each stored with its cursor.

Who reads. A read holds the connection's lease under a token of its own (not the process's), so
two threads of one worker exclude each other exactly as two workers do. A heartbeat thread
renews the lease while the read runs; a read whose lease was taken over (it stalled past the
lease) stops at the next page. A tick that finds a read running is skipped and counted.

Waiting for the provider. Polls run on a queue and threads of their own (worker/actors.py), and
inside a poll actor a request never sleeps long for the provider's allowance: when the account's
next slot is more than MAX_PACE_WAIT away the read ends its message and sends itself again,
delayed to that slot, keeping the lease (adapters/pacing.py). The stored cursor is where it goes
on; a crash in between resumes there too.

Failures. A provider error ends the read where it is (the pages stored keep their cursor) and
lengthens the connection's back-off (worker/poll_state.py); a 429's Retry-After is persisted, so
no tick reads the connection before it, even after a restart.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from bookingsync.adapters import pacing
from bookingsync.adapters.base import Capability, ReadContext, Reader
from bookingsync.models.errors import ProviderError, RateLimited
from bookingsync.worker import leases, metrics, poll_state, store, watch
from bookingsync.worker.db import transaction
from bookingsync.worker.ingest import apply_page
from bookingsync.worker.ingest_store import FirstSightContended
from bookingsync.worker.runtime import Runtime

log = logging.getLogger(__name__)

# The longest a poll thread waits in place for the provider's next slot; beyond it the read is
# rescheduled. Short waits are cheaper to sleep than a round trip through the broker.
MAX_PACE_WAIT = 1.0
# The lease is renewed this many times per lease period, so one missed renewal does not lose it.
HEARTBEATS_PER_LEASE = 3


@dataclass
class PollResult:
    connection: str
    ran: bool = False
    pages: int = 0
    records: int = 0
    quarantined: int = 0
    events: list[str] = field(default_factory=list)
    error: str | None = None
    skipped: str | None = None  # why a tick did not read: "busy" (a read runs), "backing_off"
    deferred: float | None = None  # seconds until the rescheduled rest of the read


class _Heartbeat:
    """Renews a read's lease every lease/3 seconds on a thread of its own until stopped."""

    def __init__(self, rt: Runtime, name: str, token: str, seconds: float) -> None:
        self._rt, self._name, self._token, self._seconds = rt, name, token, seconds
        self._stop = threading.Event()
        self.lost = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat {name}", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._seconds / HEARTBEATS_PER_LEASE):
            try:
                held = leases.acquire(
                    self._rt.engine, self._name, self._token, self._rt.clock.now(), self._seconds
                )
            except Exception:  # a database blip: the next beat tries again
                log.warning("could not renew %s", self._name, exc_info=True)
                continue
            if not held:
                self.lost.set()
                return


class _LeaseLost(Exception):
    pass


@metrics.timed_poll
def poll(rt: Runtime, connection_id: str, read: str | None = None, *, defer: bool = False) -> PollResult:
    """Read `connection_id` once (a tick, `read` None) or go on with the deferred read `read`.

    `defer`: reschedule instead of sleeping for the provider's allowance (the poll actor's way;
    a direct call, as in tests and `bookingsync poll`, waits in place).
    """
    result = PollResult(connection=connection_id)
    conn = rt.config.connection(connection_id)
    if conn is None or not conn.enabled:
        result.error = f"connection {connection_id!r} is not configured or disabled"
        return result
    adapter = rt.adapter(connection_id)
    if not isinstance(adapter, Reader):  # nothing to poll: it only books, or only receives webhooks
        return result
    lease_name, lease_seconds = f"poll:{connection_id}", rt.config.scheduler.lease_seconds
    now = rt.clock.now()
    if read is None:
        with transaction(rt.engine) as session:
            waiting = poll_state.blocked_until(session, connection_id, now)
        if waiting is not None:
            result.skipped = "backing_off"
            return result
        token = f"{rt.holder}:read:{uuid.uuid4().hex[:12]}"
    else:
        token = read
    if not leases.acquire(rt.engine, lease_name, token, now, lease_seconds):
        if read is None:
            result.skipped = "busy"
            poll_state.update(rt.engine, connection_id, now, _count_skip)
        else:
            log.warning("poll of %s: the deferred read's lease was taken over; dropping it", connection_id)
        return result
    result.ran = True
    keep_lease = False
    try:
        with (
            _Heartbeat(rt, lease_name, token, lease_seconds) as heartbeat,
            pacing.deferring(MAX_PACE_WAIT) if defer and rt.actors is not None else contextlib.nullcontext(),
        ):
            _read(rt, connection_id, conn, adapter, heartbeat, result)
        poll_state.update(
            rt.engine, connection_id, rt.clock.now(), lambda row: poll_state.succeeded(row, rt.clock.now())
        )
    except pacing.PaceDeferred as exc:
        keep_lease = _reschedule(rt, connection_id, token, exc.seconds, lease_name, lease_seconds, result)
    except _LeaseLost:
        result.error = "the read's lease was taken over (the read stalled past it); stopped"
        log.warning("poll of %s stopped after %d page(s): %s", connection_id, result.pages, result.error)
    except FirstSightContended as exc:
        # Our own writers (webhooks of the same bookings, arriving in a flood beside the read) kept
        # linking the page's new bookings first. Nothing of the page was stored and the cursor stands
        # before it: the next tick reads it again. A warning, not a failed message's traceback.
        result.error = str(exc)
        log.warning("poll of %s stopped after %d page(s): %s", connection_id, result.pages, exc)
    except ProviderError as exc:
        result.error = str(exc)
        log.warning("poll of %s stopped after %d page(s): %s", connection_id, result.pages, exc)
        retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
        failed_at, reason = rt.clock.now(), str(exc)
        poll_state.update(
            rt.engine,
            connection_id,
            failed_at,
            lambda row: poll_state.failed(
                row, failed_at, reason, interval=conn.poll_interval_seconds, retry_after=retry_after
            ),
        )
    finally:
        if not keep_lease:
            leases.release(rt.engine, lease_name, token)
    return result


def _read(rt: Runtime, connection_id: str, conn, adapter, heartbeat: _Heartbeat, result: PollResult) -> None:
    now = rt.clock.now()
    with transaction(rt.engine) as session:
        cursor = store.get_cursor(session, connection_id)
        hints = {}
        if Capability.LOOKUP_BY_EMAIL in adapter.capabilities:
            hints = watch.hints(session, now, now - timedelta(days=conn.lookback_days))
    context = ReadContext(
        now=now, watch_emails=frozenset(hints), watch_hints=hints, interval_seconds=conn.poll_interval_seconds
    )
    summary = None
    for page in adapter.read(cursor, context):
        applied = apply_page(rt, connection_id, adapter, page)
        result.pages += 1
        result.records += len(page.records)
        result.quarantined += applied.quarantined
        result.events.extend(applied.events)
        summary = page.watch or summary
        if heartbeat.lost.is_set():
            raise _LeaseLost
    if summary is not None:
        poll_state.update(rt.engine, connection_id, rt.clock.now(), lambda row: watch.record(row, summary))


def _reschedule(
    rt: Runtime,
    connection_id: str,
    token: str,
    seconds: float,
    lease_name: str,
    lease_seconds: float,
    result: PollResult,
) -> bool:
    """Send the rest of the read for when the provider allows it; True when the lease stays held."""
    assert rt.actors is not None  # deferring is only entered with actors
    now = rt.clock.now()
    # The lease must outlive the wait, or a tick would start a second read meanwhile.
    if not leases.acquire(rt.engine, lease_name, token, now, seconds + lease_seconds):
        return False
    rt.actors.poll.send_with_options(args=(connection_id, token), delay=int(seconds * 1000) + 1)
    result.deferred = seconds
    poll_state.update(rt.engine, connection_id, now, _count_deferral)
    return True


def _count_skip(row) -> None:
    row.skipped_ticks += 1


def _count_deferral(row) -> None:
    row.deferred_pages += 1
