"""Times in events: UTC, milliseconds, `Z`, as JavaScript's toISOString writes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from bookingsync.worker.payloads import event_time


def test_event_times_are_utc_milliseconds_truncated_with_z() -> None:
    assert event_time(datetime(2026, 3, 29, 1, 2, 3, 999_999, tzinfo=UTC)) == "2026-03-29T01:02:03.999Z"
    assert event_time(datetime(2026, 3, 29, 1, 2, 3, tzinfo=UTC)) == "2026-03-29T01:02:03.000Z"
    berlin_summer = timezone(timedelta(hours=2))
    assert (
        event_time(datetime(2026, 3, 29, 4, 0, 0, 1_500, tzinfo=berlin_summer)) == "2026-03-29T02:00:00.001Z"
    )
    assert event_time(datetime(987, 1, 2, tzinfo=UTC)) == "0987-01-02T00:00:00.000Z"  # as toISOString pads
    assert event_time(None) is None
