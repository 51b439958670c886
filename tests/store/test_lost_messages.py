"""Work whose broker message is known lost is handed out again at once, not after its lease.

A send the broker refuses puts the claimed rows back in line; a Redis of this test's own, killed
and started again, is noticed by the leader's watcher (its run_id changes, its marker is gone).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from bookingsync.worker.broker_watch import BrokerWatch
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.relay import Senders, lapse_leases, relay_once
from tests.e2e.faults import RedisServer
from tests.store.test_store_and_relay import apply, by_status, record


def _refuse(_: list) -> None:
    raise ConnectionError("the broker is restarting")


def test_a_refused_send_puts_the_claimed_rows_back_at_once(engine: Engine, clock: ManualClock) -> None:
    apply(engine, clock, record(clock, "m1"))
    refusing = Senders(publish=_refuse, deliver=_refuse, ingest=_refuse)
    with pytest.raises(ConnectionError):
        relay_once(engine, clock.now(), refusing, lease_seconds=30, limit=10)
    clock.advance(0.001)
    sent: list[list[str]] = []
    again = relay_once(
        engine,
        clock.now(),
        Senders(publish=sent.append, deliver=sent.append, ingest=sent.append),
        lease_seconds=30,
        limit=10,
    )
    assert len(again.events) == 1 and sent == [again.events], "claimed again without waiting 30 s"


def test_lapse_leases_ends_live_leases_only(engine: Engine, clock: ManualClock) -> None:
    apply(engine, clock, record(clock, "m1"))
    sent: list[list[str]] = []
    senders = Senders(publish=sent.append, deliver=sent.append, ingest=sent.append)
    relay_once(engine, clock.now(), senders, lease_seconds=30, limit=10)
    assert lapse_leases(engine, clock.now() + timedelta(seconds=1)) == 1
    assert lapse_leases(engine, clock.now() + timedelta(seconds=1)) == 0, "already ended"
    clock.advance(2)
    assert len(relay_once(engine, clock.now(), senders, lease_seconds=30, limit=10).events) == 1
    assert by_status(engine)["leased"] == ["meeting.booked"]


@pytest.mark.redis
def test_watch_notices_a_redis_restart_and_not_a_quiet_one(tmp_path: Path) -> None:
    if not RedisServer.available():
        pytest.fail("redis-server is needed on PATH")
    redis = RedisServer(tmp_path).start()
    watch = BrokerWatch(redis.url, interval=0)
    try:
        assert watch.lost_messages() is not None, "a Redis without our marker: its data may be gone"
        assert watch.lost_messages() is None
        redis.restart()
        assert "restarted" in (watch.lost_messages() or "")
        assert watch.lost_messages() is None
        redis.kill()
        assert watch.lost_messages() is None, "unreachable: nothing learned yet"
    finally:
        watch.close()
        redis.kill()
    assert BrokerWatch("memory://").lost_messages() is None
