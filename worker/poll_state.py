"""What a connection's polls remember between ticks: back-off, Retry-After, skipped ticks.

The back-off belongs to the connection, not to one tick: each failed read in a row doubles the
wait before the next one (from half an interval up to BACKOFF_CAP, with jitter so connections
and deployments that failed together do not come back together), and a provider's Retry-After
holds the connection at least that long. Both are one instant, `not_before`, stored in
`poll_states`, so a restarted worker honours a wait a provider asked for an hour ago.

`next_delay` is the pure rule; the rest reads and writes the row in the caller's transaction.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from bookingsync.models.tables import PollStateRow
from bookingsync.worker.db import transaction

# Past this a failing connection is still tried every 15 minutes: long enough to stop hammering a
# provider that is down, short enough that a fixed credential shows up without a restart.
BACKOFF_CAP_SECONDS = 900.0
MAX_ERROR_CHARS = 500


def next_delay(failures: int, interval: float, rng: Callable[[], float] = random.random) -> float:
    """Seconds before the next read after `failures` failed reads in a row (>= 1).

    Drawn from [c/2, c] with c = min(cap, interval * 2**(failures-1)): the first failure waits
    about one interval (the next tick), each further one twice as long.
    """
    cap = max(BACKOFF_CAP_SECONDS, interval)
    ceiling = min(cap, interval * 2 ** min(max(failures, 1) - 1, 30))
    return ceiling / 2 + rng() * ceiling / 2


def _row(session: Session, connection: str, now: datetime) -> PollStateRow:
    row = session.exec(
        select(PollStateRow).where(PollStateRow.connection == connection).with_for_update()
    ).first()
    if row is None:
        row = PollStateRow(connection=connection, updated_at=now)
        session.add(row)
    return row


def update(engine, connection: str, now: datetime, change: Callable[[PollStateRow], None]) -> None:
    """Apply `change` to the connection's row in a transaction of its own (made on first use)."""
    for attempt in range(2):
        try:
            with transaction(engine) as session:
                row = _row(session, connection, now)
                change(row)
                row.updated_at = now
            return
        except IntegrityError:
            if attempt:  # two first writers raced to insert: the loser retries once as an update
                raise


def blocked_until(session: Session, connection: str, now: datetime) -> datetime | None:
    """The instant before which the connection must not be read, or None."""
    row = session.get(PollStateRow, connection)
    if row is None or row.not_before is None or row.not_before <= now:
        return None
    return row.not_before


def succeeded(row: PollStateRow, now: datetime) -> None:
    row.failures = 0
    row.not_before = None
    row.last_read_at = now


def failed(
    row: PollStateRow,
    now: datetime,
    error: str,
    *,
    interval: float,
    retry_after: float | None,
    rng: Callable[[], float] = random.random,
) -> None:
    row.failures += 1
    delay = next_delay(row.failures, interval, rng)
    if retry_after is not None:
        delay = max(delay, retry_after)
    row.not_before = now + timedelta(seconds=delay)
    row.last_error = error[:MAX_ERROR_CHARS]
    row.last_error_at = now


def describe(row: PollStateRow | None, now: datetime) -> str:
    """The polling column of `bookingsync status`: back-off, or how the last read went."""
    if row is None:
        return "—"
    parts = []
    if row.not_before is not None and row.not_before > now:
        parts.append(
            f"backing off until {row.not_before.isoformat().replace('+00:00', 'Z')}: "
            f"{row.last_error or 'a failed read'}"
        )
    elif row.failures:
        parts.append(f"{row.failures} failed read(s) in a row: {row.last_error or ''}".rstrip(": "))
    elif row.last_read_at is not None:
        parts.append(f"ok, last read {row.last_read_at.isoformat().replace('+00:00', 'Z')}")
    if row.watch_count is not None and row.watch_staleness_seconds is not None:
        due = (
            "now"
            if row.watch_next_due_at is None or row.watch_next_due_at <= now
            else f"in {int((row.watch_next_due_at - now).total_seconds() + 0.999)} s"
        )
        parts.append(
            f"{row.watch_count} emails, each read at least every "
            f"{int(row.watch_staleness_seconds + 0.999)} s, next due {due}"
        )
    if row.skipped_ticks:
        parts.append(f"{row.skipped_ticks} tick(s) skipped while a read ran")
    return "; ".join(parts) or "—"
