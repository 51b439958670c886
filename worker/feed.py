"""The event feed: every published event, numbered in the order its publishing committed.

A consumer that missed webhooks, or wants none, reads `GET /v1/events?after=<cursor>` and keeps
the last position it processed as its cursor. That only works if a position, once seen, has no
smaller position still to come.

Why not `events.id`: ids are drawn when a row is inserted, long before it is published, and on
PostgreSQL two publishing transactions commit in whatever order they finish. A reader that saw
id 8 committed while id 7 was still in flight would move its cursor past 7 and never see it.

How positions are made commit-ordered: publishing calls `assign(session, events)` as the last
write of its transaction. It is one `UPDATE feed_counter SET value = value + n … RETURNING value`
on a single row, and a row updated in a transaction stays locked until that transaction ends.

1. Handed out in commit order. A second publisher's UPDATE waits on the row lock until the first
   commits (or rolls back), then re-reads the row and continues from its committed value. So a
   transaction holding positions p… commits before any transaction can obtain a position > p.
2. No holes, no reuse. The counter moves only inside a committed publish: a rolled-back one
   takes its increment with it, and the next publisher continues from the committed value.
3. Visible in order. PostgreSQL makes a committed transaction visible to new snapshots before it
   releases its locks (CommitTransaction: commit record, ProcArray, then lock release), and the
   waiter only proceeds after the release. Whoever sees position q therefore already sees every
   position below q, and `after=q` can never skip one.

SQLite runs one writer at a time (`BEGIN IMMEDIATE`, worker/db.py), so the same code is ordered
there trivially.

The price is that publishing transactions are serialised from their `assign` to their commit:
keep it the last statement before the commit, and assign a whole batch at once (one UPDATE per
transaction, however many events). Within a batch, events get positions in (sequence, id)
order, so a meeting's events never appear in the feed before an earlier sequence of the same batch.

Only published events have a position; cancelled or dropped timers never enter the feed.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import update
from sqlmodel import Session, col, select

from bookingsync.models.tables import EventRow, FeedCounterRow

COUNTER = "events"  # the feed_counter row of the event feed (seeded by migration 0006)
MAX_PAGE = 1000  # the most events one feed read returns


class FeedCounterMissing(RuntimeError):
    """The database was not migrated to 0006: there is no counter to number events with."""


def assign(session: Session, events: Sequence[EventRow]) -> None:
    """Give `events` (being published in this transaction) the next feed positions.

    Call it as the last write before the commit: from here until the commit, other publishers wait.
    """
    if not events:
        return
    statement = (
        update(FeedCounterRow)
        .where(col(FeedCounterRow.name) == COUNTER)
        .values(value=col(FeedCounterRow.value) + len(events))
        .returning(col(FeedCounterRow.value))
    )
    top = session.execute(statement).scalar_one_or_none()
    if top is None:
        raise FeedCounterMissing("the feed_counter row is missing; run `bookingsync db upgrade`")
    first = top - len(events) + 1
    ordered = sorted(events, key=lambda event: (event.sequence or 0, event.id or 0))
    for offset, event in enumerate(ordered):
        event.feed_position = first + offset


def read(session: Session, after: int, limit: int) -> list[EventRow]:
    """Published events with a position after `after`, in position order, at most `limit`."""
    query = (
        select(EventRow)
        .where(col(EventRow.feed_position) > after)
        .order_by(col(EventRow.feed_position))
        .limit(min(limit, MAX_PAGE))
    )
    return list(session.exec(query))


def head(session: Session) -> int:
    """The newest committed position (0 when nothing was published yet)."""
    value = session.exec(select(FeedCounterRow.value).where(FeedCounterRow.name == COUNTER)).first()
    return int(value or 0)
