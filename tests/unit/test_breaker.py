"""The circuit breaker's states, with an injected time (no sleeping)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bookingsync.worker.breaker import Breaker, State

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_opens_after_consecutive_failures_only() -> None:
    breaker = Breaker(failures=3, cooldown_seconds=30)
    for _ in range(2):
        assert breaker.admit(T0).send
        assert breaker.record(False, T0) is State.CLOSED
    assert breaker.record(True, T0) is State.CLOSED  # a success resets the count
    for _ in range(2):
        breaker.record(False, T0)
    assert breaker.state is State.CLOSED
    assert breaker.record(False, at(1)) is State.OPEN
    refused = breaker.admit(at(2))
    assert not refused.send and refused.retry_at == at(31)
    assert breaker.shut_until(at(2)) == at(31)


def test_half_open_lets_exactly_one_probe_through_and_its_success_closes() -> None:
    breaker = Breaker(failures=1, cooldown_seconds=10)
    breaker.record(False, T0)
    assert breaker.shut_until(at(10)) is None  # cooled down: no longer shut, a probe may go
    probe = breaker.admit(at(10))
    assert probe.send and probe.probe and breaker.state is State.HALF_OPEN
    other = breaker.admit(at(10.5))
    assert not other.send and other.retry_at is not None and other.retry_at > at(10.5)
    assert breaker.record(True, at(11)) is State.CLOSED
    assert breaker.admit(at(11)).send and breaker.admit(at(11)).send


def test_failed_probe_reopens_for_twice_the_cooldown_then_caps() -> None:
    breaker = Breaker(failures=1, cooldown_seconds=10)
    breaker.record(False, T0)
    waits = []
    now = T0
    for _ in range(9):
        until = breaker.shut_until(now)
        assert until is not None
        waits.append((until - now).total_seconds())
        now = until
        assert breaker.admit(now).probe
        assert breaker.record(False, now) is State.OPEN
    assert waits[:4] == [10, 20, 40, 80]
    assert max(waits) == 10 * 2**6  # capped
    assert waits[-1] == waits[-2]
