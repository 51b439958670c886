"""LeanData's watch list as a priority schedule (adapters/leandata_watch.py), simulated poll by poll."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bookingsync.adapters.base import WatchHint
from bookingsync.adapters.leandata_watch import plan

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def simulate(emails, hints, *, polls, interval, rate, read=None):
    """Run `polls` polls `interval` apart; return each email's read times and the last plan."""
    last_read = dict(read or {})
    reads: dict[str, list[float]] = {e: [] for e in emails}
    result = None
    for n in range(polls):
        now = NOW + timedelta(seconds=n * interval)
        result = plan(emails, last_read, hints, now, interval=interval, rate=rate)
        assert len(result.due) <= max(1, int(rate * interval))  # never beyond the rate
        for email in result.due:
            last_read[email] = now.timestamp()
            reads[email].append(now.timestamp())
    return reads, result


def test_500_emails_at_5_per_second_a_meeting_about_to_start_is_read_every_poll():
    emails = [f"p{i:03d}@x.co" for i in range(500)]
    soon = "p499@x.co"  # sorts last: a fixed-order loop would read it last
    hints = {soon: WatchHint(next_start=NOW + timedelta(minutes=9))}
    already = {e: NOW.timestamp() - i * 0.2 for i, e in enumerate(emails)}  # a list read before
    reads, last = simulate(emails, hints, polls=120, interval=2.0, rate=5.0, read=already)
    gaps = [b - a for a, b in zip(reads[soon], reads[soon][1:], strict=False)]
    assert reads[soon] and max(gaps) <= 2 * 2.0
    # A poll reads 7 (5/s for three quarters of the 2 s interval), one of them the soon meeting:
    # the other 499 emails share 3 reads a second, each about every 166 s.
    staleness = last.summary.staleness_seconds
    assert 160 < staleness < 172 and last.summary.count == 500
    worst = max((b - a for r in reads.values() for a, b in zip(r, r[1:], strict=False)), default=0)
    assert worst <= staleness + 2.0


def test_a_just_added_email_is_read_first_and_a_recent_change_soon_after():
    emails = [f"p{i:03d}@x.co" for i in range(100)]
    read = {e: NOW.timestamp() - 1 for e in emails}
    emails = [*emails, "new@x.co"]
    hints = {"p050@x.co": WatchHint(changed_at=NOW - timedelta(minutes=1))}
    first = plan(emails, read, hints, NOW, interval=2.0, rate=5.0)
    assert first.due[0] == "new@x.co"
    # p050 changed a minute ago: urgent, due one interval after its last read.
    later = plan(
        emails,
        {**read, "new@x.co": NOW.timestamp()},
        hints,
        NOW + timedelta(seconds=1.5),
        interval=2.0,
        rate=5.0,
    )
    assert "p050@x.co" in later.due


def test_a_short_list_is_read_every_interval_and_says_when_next():
    emails = ["a@x.co", "b@x.co"]
    result = plan(
        emails, {"a@x.co": NOW.timestamp(), "b@x.co": NOW.timestamp()}, {}, NOW, interval=10.0, rate=5.0
    )
    assert result.due == [] and result.summary.staleness_seconds == 10.0
    assert result.summary.next_due_at == NOW + timedelta(seconds=10)


def test_more_urgent_emails_than_a_poll_reads_do_not_starve_the_rest():
    # 20 emails whose meetings were just seen elsewhere (a bulk of new Leezy meetings) and one
    # about to start: more urgent emails than the 7 a poll reads. The rest keep their share.
    rest = [f"p{i:03d}@x.co" for i in range(100)]
    urgent = [f"new{i:02d}@x.co" for i in range(20)]
    hints = {e: WatchHint(changed_at=NOW) for e in urgent}
    hints["soon@x.co"] = WatchHint(next_start=NOW + timedelta(minutes=5))
    emails = [*rest, *urgent, "soon@x.co"]
    already = {e: NOW.timestamp() - (200 if e in rest else 1) for e in emails}  # the rest overdue
    reads, last = simulate(emails, hints, polls=60, interval=2.0, rate=5.0, read=already)
    assert sum(1 for e in rest if reads[e]) == 60  # the rest's share: one of the 7 reads a poll
    assert max(b - a for a, b in zip(reads["soon@x.co"], reads["soon@x.co"][1:], strict=False)) <= 2.0
    worst_urgent = max(b - a for e in urgent for a, b in zip(reads[e], reads[e][1:], strict=False))
    # 21 urgent emails share 6 reads a poll: each about every 3.5 polls; the summary says so.
    assert worst_urgent <= 4 * 2.0 and last.summary.staleness_seconds >= 21 * 2.0 / 6
    assert last.summary.staleness_seconds == 100 * 2.0  # the rest: one read a poll


def test_a_meeting_about_to_start_goes_before_a_crowd_of_new_emails():
    # Twenty attendees just seen at another provider (never read here) and one meeting starting
    # in 5 minutes: the poll reads the soon one, whatever else is new.
    emails = [*(f"new{i:02d}@x.co" for i in range(20)), "soon@x.co"]
    hints = {"soon@x.co": WatchHint(next_start=NOW + timedelta(minutes=5))}
    result = plan(emails, {"soon@x.co": NOW.timestamp() - 2}, hints, NOW, interval=2.0, rate=5.0)
    assert result.due[0] == "soon@x.co" and len(result.due) == 7
