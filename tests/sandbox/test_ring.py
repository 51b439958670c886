"""The simulators' logs are bounded rings: a long demo or soak keeps the newest entries only."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bookingsync.sandbox.request_log import RecordedRequest, RequestLog
from bookingsync.sandbox.ring import Ring


def request(i: int) -> RecordedRequest:
    return RecordedRequest(
        method="GET",
        path=f"/r/{i}",
        query=[],
        headers={},
        status=200,
        received_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_a_ring_keeps_the_newest_in_order_and_counts_what_fell_off() -> None:
    ring: Ring[int] = Ring(3)
    for i in range(10):
        ring.append(i)
    assert ring.items() == [7, 8, 9] and len(ring) == 3 and ring.dropped == 7
    ring.clear()
    assert ring.items() == [] and ring.dropped == 0
    with pytest.raises(ValueError, match="at least one"):
        Ring(0)


def test_the_request_log_stays_at_its_capacity() -> None:
    log = RequestLog(capacity=100)
    for i in range(1000):
        log.record(request(i))
    entries = log.entries()
    assert [e.path for e in entries] == [f"/r/{i}" for i in range(900, 1000)]
    assert log.dropped == 900
