"""LeanData's watch list as a schedule: which prospect emails one poll reads, and in what order.

LeanData has no change feed: each watched email costs one request, at a rate we choose
(`requests_per_second`). Reading the list in a fixed order every poll makes an email late in the
order wait for all the others, and a long list outlast the interval. Instead each email has a
target period and is read when it falls due, most urgent first, at most `rate x interval x
READ_FILL` per poll (a read must end before the next tick, or that tick finds it running and is
skipped, and an urgent email waits two intervals):

* urgent, every interval: an email never read yet (just added: a new upcoming meeting
  elsewhere), one with a meeting starting within SOON, one whose meetings changed within RECENT;
* the rest share what the urgent ones leave of the rate, spread evenly: each is read every
  `rest / spare rate` seconds, never more often than every interval. They always keep REST_SHARE
  of each poll: a bulk of new meetings elsewhere can make thousands of emails urgent for RECENT,
  and without a share of their own the rest would not be read at all meanwhile.

The worst staleness of any email follows from the count and the rate, and is what `bookingsync
status` shows ("412 emails, each read at least every 83 s, next due in 4 s"). Pure: no HTTP.

The cursor holds each email's last read ({"read": {email: unix seconds}}). Versions before the
schedule stored {"after": email | None}: a round in sorted order, `after` the last email done in the
round under way (None: the round finished). `last_reads` reads that form too (see there).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bookingsync.adapters.base import WatchHint, WatchSummary

# A meeting this close to its start is re-read every interval: a cancellation must be seen before
# `hasStarted` goes out.
SOON = timedelta(minutes=10)
# An email whose meetings just changed is likely to change again (a reschedule, then a cancel).
RECENT = timedelta(minutes=10)
# An email is read in a poll when it falls due before the poll's half-interval mark: ticks jitter,
# and an urgent email must not slip to every second poll by a few milliseconds.
DUE_SLACK = 0.5
# The part of each poll's reads kept for the emails that are not urgent (when both kinds wait).
REST_SHARE = 0.2
# The part of the interval a read's requests may fill at the rate; the rest is for the round trips
# and the pages' writes, so the read is over when the next tick comes.
READ_FILL = 0.75


@dataclass(frozen=True)
class Plan:
    due: list[str]  # the emails to read now, in order
    summary: WatchSummary


def last_reads(cursor: Mapping[str, Any] | None, emails: Sequence[str]) -> dict[str, float]:
    """Each still-watched email's last read, from a cursor of either form.

    An old {"after": …} cursor gives no times, only where the round stood. Reading it as "nothing
    read yet" would make every email new, so urgent, and let the whole list crowd out the emails
    whose meetings start soon. Instead every email gets a stand-in time far in the past, in the
    old round's order: the ones the round had not reached yet (after `after`, last read the round
    before) oldest, then the ones it had done. All are overdue, none is new, so the schedule goes on
    where the round stopped, at the rate, behind the truly urgent emails; each email's real time
    replaces its stand-in when it is read, and the next saved cursor has the new form.
    """
    cursor = cursor or {}
    read = cursor.get("read")
    if isinstance(read, Mapping):
        watched = set(emails)
        return {e: float(t) for e, t in read.items() if e in watched and isinstance(t, (int, float))}
    if "after" not in cursor:
        return {}
    after = cursor["after"]
    in_order = sorted(emails)
    if isinstance(after, str):
        in_order = [e for e in in_order if e > after] + [e for e in in_order if e <= after]
    # Seconds since the epoch 1, 2, 3…: older than any real read, ordered as the old round.
    return {email: float(position + 1) for position, email in enumerate(in_order)}


def urgent(email: str, last_read: Mapping[str, float], hints: Mapping[str, WatchHint], now: datetime) -> bool:
    if email not in last_read:
        return True
    hint = hints.get(email)
    if hint is None:
        return False
    if hint.next_start is not None and hint.next_start - now <= SOON:
        return True
    return hint.changed_at is not None and now - hint.changed_at <= RECENT


def plan(
    emails: Sequence[str],
    last_read: Mapping[str, float],
    hints: Mapping[str, WatchHint],
    now: datetime,
    interval: float,
    rate: float,
) -> Plan:
    """The emails due in this poll (at most rate x interval x READ_FILL), most urgent first, and
    the summary."""
    budget = max(1, math.floor(rate * interval * READ_FILL + 1e-9))
    hot = {e for e in emails if urgent(e, last_read, hints, now)}
    rest = len(emails) - len(hot)
    # With one read per poll there is nothing to share: urgent emails come first.
    reserve = max(1, math.floor(budget * REST_SHARE)) if rest and budget > 1 else 0
    hot_budget = budget - reserve
    spare = (budget - min(len(hot), hot_budget)) / interval  # reads a second left for the rest
    rest_period = interval if rest == 0 else max(interval, rest / spare) if spare > 0 else math.inf
    at = now.timestamp()

    def due_at(email: str) -> float:
        if email not in last_read:
            return -math.inf
        return last_read[email] + (interval if email in hot else rest_period)

    def order(email: str) -> tuple:
        hint = hints.get(email)
        start = hint.next_start.timestamp() if hint is not None and hint.next_start is not None else math.inf
        # A meeting about to start goes before a just-added email: twenty new attendees from
        # another provider must not hold back the read that catches a last-minute cancel.
        soon = start - at <= SOON.total_seconds()
        return (email in hot, soon, email not in last_read, -start if email in hot else 0.0, -due_at(email))

    ready = [e for e in emails if due_at(e) <= at + interval * DUE_SLACK]
    # Sorted descending by the tuple: urgent first (starting soon, then never read, then changed,
    # soonest start first), then the most overdue.
    ready.sort(key=order, reverse=True)
    hot_ready = [e for e in ready if e in hot]
    rest_ready = [e for e in ready if e not in hot]
    # Each kind may use what the other leaves; the rest never get less than the reserve.
    take_rest = min(len(rest_ready), max(reserve, budget - len(hot_ready)))
    chosen = hot_ready[: budget - take_rest] + rest_ready[:take_rest]
    left = [due_at(e) for e in emails if e not in set(chosen)]
    upcoming = min(left) if left else at + interval
    if math.isinf(upcoming):  # one read a poll, taken by urgent emails: the rest wait for them
        upcoming = at + interval
    next_due = datetime.fromtimestamp(max(upcoming, at), now.tzinfo)
    worst = rest_period if rest else float(interval)
    if math.isinf(worst):  # more urgent emails than a poll reads
        worst = len(emails) * interval / budget
    if len(hot) > hot_budget:  # the urgent ones take turns too
        worst = max(worst, len(hot) * interval / max(1, hot_budget))
    return Plan(
        due=chosen, summary=WatchSummary(count=len(emails), staleness_seconds=worst, next_due_at=next_due)
    )
