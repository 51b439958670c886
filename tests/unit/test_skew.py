"""Provider clock skew: measured from `Date` headers (or the newest updated_at), widening Leezy's margin."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from bookingsync.adapters import skew
from bookingsync.adapters.base import ReadContext
from bookingsync.adapters.leezy import CLOCK_SKEW_ALLOWANCE, LeezyAdapter
from bookingsync.worker import metrics

OURS = datetime(2026, 12, 6, 23, 0, tzinfo=UTC)


def http_date(value: datetime) -> str:
    return format_datetime(value, usegmt=True)


def test_the_estimate_is_the_median_of_date_samples_and_widens_only_for_a_lagging_clock() -> None:
    estimate = skew.SkewEstimate("t")
    assert estimate.offset == timedelta(0) and estimate.margin(CLOCK_SKEW_ALLOWANCE) == CLOCK_SKEW_ALLOWANCE
    for seconds in (-120, -121, -119, +3600):  # one cached or broken Date cannot move the median
        estimate.observe_date(http_date(OURS + timedelta(seconds=seconds)), OURS)
    assert timedelta(seconds=-121) < estimate.offset < timedelta(seconds=-118)
    assert estimate.margin(timedelta(seconds=30)) == timedelta(seconds=30) - estimate.offset
    ahead = skew.SkewEstimate("t2")
    ahead.observe_date(http_date(OURS + timedelta(minutes=2)), OURS)
    assert ahead.margin(timedelta(seconds=30)) == timedelta(seconds=30)  # a clock ahead needs no wider margin
    estimate.observe_date("not a date", OURS)
    estimate.observe_date(None, OURS)  # ignored, not a sample


def test_without_a_date_header_a_future_updated_at_says_the_provider_runs_ahead() -> None:
    estimate = skew.SkewEstimate("t3")
    estimate.observe_newest(OURS - timedelta(seconds=5), OURS)
    assert estimate.offset == timedelta(0)
    estimate.observe_newest(OURS + timedelta(seconds=90), OURS)
    assert estimate.offset == timedelta(seconds=90)


def test_skew_beyond_the_bound_is_a_warning_once_and_a_metric(caplog: pytest.LogCaptureFixture) -> None:
    name = f"lz-{uuid.uuid4().hex[:8]}"
    estimate = skew.for_connection(name)
    assert skew.for_connection(name) is estimate
    with caplog.at_level(logging.WARNING, logger="bookingsync.adapters.skew"):
        for _ in range(3):
            estimate.observe_date(http_date(OURS - timedelta(minutes=2)), OURS)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "119.5 s behind ours" in warnings[0].getMessage()
    value = metrics.REGISTRY.get_sample_value("bookingsync_provider_clock_skew_seconds", {"connection": name})
    assert value == pytest.approx(-119.5)


def test_leezy_two_minutes_behind_keeps_records_changed_during_the_read_inside_the_next_read() -> None:
    """The cap on `since` is counted back from our clock by the allowance plus Leezy's measured lag."""
    lag = timedelta(minutes=2)
    now = datetime.now(UTC)
    leezy_now = now - lag

    def handler(request: httpx.Request) -> httpx.Response:
        record = {
            "id": "m1",
            "type": "meeting",
            "attributes": {
                "start_time": "2027-01-05T10:00:00Z",
                "end_time": "2027-01-05T10:30:00Z",
                "status": "scheduled",
                "updated_at": (leezy_now - timedelta(seconds=1)).isoformat(),
            },
        }
        meta = {"total": 1, "limit": 100, "offset": 0, "has_more": False, "count": 1}
        return httpx.Response(
            200, json={"data": [record], "meta": meta}, headers={"Date": http_date(datetime.now(UTC) - lag)}
        )

    adapter = LeezyAdapter(
        connection_id=f"lz-{uuid.uuid4().hex[:8]}",
        base_url="https://app.leezy.ai",
        token="lzy_at_x",
        transport=httpx.MockTransport(handler),
        sleep=lambda s: None,
    )
    (page,) = list(adapter.read(None, ReadContext(now=now)))
    since = datetime.fromisoformat(page.cursor["since"].replace("Z", "+00:00"))
    # Without the measurement the cap (now - 30 s) is above every Leezy stamp and protects nothing;
    # with it, `since` is at most Leezy's read start less the allowance.
    assert since <= leezy_now - CLOCK_SKEW_ALLOWANCE + timedelta(seconds=2)
    assert since >= leezy_now - CLOCK_SKEW_ALLOWANCE - timedelta(seconds=3)
