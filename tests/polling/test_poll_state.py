"""Back-off across ticks: the pure rule, and the row a failed read leaves (status shows it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bookingsync.models.tables import PollStateRow
from bookingsync.worker import poll_state

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_consecutive_failures_double_the_delay_up_to_the_cap():
    top = [poll_state.next_delay(n, 10.0, rng=lambda: 1.0) for n in range(1, 10)]
    assert top[:4] == [10.0, 20.0, 40.0, 80.0]
    assert top[-1] == poll_state.BACKOFF_CAP_SECONDS
    # Jitter draws from the upper half, so synchronised failures spread out.
    assert poll_state.next_delay(3, 10.0, rng=lambda: 0.0) == 20.0


def test_retry_after_holds_the_connection_at_least_that_long_and_success_clears_it():
    row = PollStateRow(connection="c", updated_at=NOW)
    poll_state.failed(row, NOW, "leezy: slow down (HTTP 429)", interval=10, retry_after=120, rng=lambda: 0.0)
    assert row.failures == 1 and row.not_before == NOW + timedelta(seconds=120)
    assert (
        poll_state.describe(row, NOW) == "backing off until 2026-03-01T12:02:00Z: leezy: slow down (HTTP 429)"
    )
    poll_state.failed(row, NOW, "again", interval=10, retry_after=None, rng=lambda: 0.0)
    assert row.failures == 2 and row.not_before == NOW + timedelta(seconds=10)
    poll_state.succeeded(row, NOW)
    assert row.failures == 0 and row.not_before is None
    assert poll_state.describe(row, NOW).startswith("ok, last read")


def test_watch_summary_reads_as_a_sentence():
    row = PollStateRow(
        connection="c",
        updated_at=NOW,
        watch_count=412,
        watch_staleness_seconds=82.4,
        watch_next_due_at=NOW + timedelta(seconds=3.2),
        last_read_at=NOW,
    )
    assert "412 emails, each read at least every 83 s, next due in 4 s" in poll_state.describe(row, NOW)
