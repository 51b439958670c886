"""Per-subscription lanes on SQLite and PostgreSQL: a hanging endpoint fills only its own lane,
its breaker opens and parks its work in the database, a probe closes it again, and nothing is
sent twice or lost on the way.

Real HTTP on loopback; the deliveries come from the production path (apply → claim → publish)
and go through `delivery.dispatch`, which the deliver actor calls.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import col, select

from bookingsync.models.tables import DeliveryRow
from bookingsync.worker import delivery
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.runtime import Runtime
from tests.e2e.support import Hanging
from tests.store.test_deliveries import (
    OTHER_SECRET,
    HookServer,
    apply,
    claim_now,
    hooks,  # noqa: F401 - fixture
    publish_due,
    record,
    runtime,
    runtimes,  # noqa: F401 - fixture
    verify,
    wall_clock,  # noqa: F401 - fixture
)

COOLDOWN = 30.0


@pytest.fixture
def stuck() -> Iterator[Hanging]:
    server = Hanging(hang=30)
    yield server
    server.stop()


def rows(engine: Engine, subscription: str) -> list[DeliveryRow]:
    from bookingsync.worker.db import transaction

    with transaction(engine) as session:
        return list(
            session.exec(
                select(DeliveryRow)
                .where(DeliveryRow.subscription_id == subscription)
                .order_by(col(DeliveryRow.id))
            )
        )


def wait_for(check: Any, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def make(
    runtimes_: list[Runtime], engine: Engine, clock: ManualClock, healthy: str, stuck_url: str
) -> Runtime:
    return runtime(
        runtimes_,
        engine,
        clock,
        healthy,
        extra=[{"id": "stuck", "url": stuck_url, "secret": OTHER_SECRET}],
        delivery_cfg={
            "timeout_seconds": 1.5,
            "concurrency_per_subscription": 2,
            "breaker_failures": 2,
            "breaker_cooldown_seconds": COOLDOWN,
            "min_backoff_seconds": 1,
        },
    )


def test_a_hanging_endpoint_costs_its_own_lane_and_its_breaker_parks_the_rest(
    engine: Engine,
    wall_clock: ManualClock,  # noqa: F811 (the imported fixture)
    hooks: HookServer,  # noqa: F811 (the imported fixture)
    stuck: Hanging,
    runtimes: list[Runtime],  # noqa: F811 (the imported fixture)
) -> None:
    rt = make(runtimes, engine, wall_clock, hooks.url(), stuck.url)
    for i in range(6):
        apply(rt, record(wall_clock, f"m{i}"))
    published = publish_due(rt)
    ids = [d for _, deliveries in published for d in deliveries]
    assert len(ids) == 12

    delivery.dispatch(rt, ids)
    # The caller (a dramatiq thread) is back while the stuck endpoint still holds its requests.
    assert all(r.status == "leased" for r in rows(engine, "stuck"))

    wait_for(lambda: all(r.status == "succeeded" for r in rows(engine, "crm")), "the healthy subscription")
    assert sorted(r.headers["webhook-id"] for r in hooks.received) == sorted(e for e, _ in published)
    for got in hooks.received:
        verify(got)

    # Two requests hang (the lane's cap) and time out; the second failure opens the breaker (a
    # sender freed by the first may have sent one more meanwhile). The rest never go out: they wait
    # in the database, their attempt given back, until the breaker half-opens.
    wait_for(lambda: all(r.status == "pending" for r in rows(engine, "stuck")), "the stuck lane to settle")
    stuck_rows = rows(engine, "stuck")
    tried = [r for r in stuck_rows if r.last_error]
    parked = [r for r in stuck_rows if not r.last_error]
    assert len(tried) in (2, 3) and len(parked) == 6 - len(tried) and len(stuck.ids) == len(tried)
    assert all(r.attempts == 1 and "Timeout" in (r.last_error or "") for r in tried)
    assert all(r.attempts == 0 and r.due_at == wall_clock.now() + timedelta(seconds=COOLDOWN) for r in parked)
    lane = rt.lanes.lane(rt.config.subscription("stuck"))  # type: ignore[arg-type]
    assert lane.breaker.state == "open"

    # Still open: what the relay hands out meanwhile goes straight back, unsent.
    wall_clock.advance(seconds=2)
    again = claim_now(rt)
    assert sorted(again.deliveries) == sorted(r.id for r in tried)
    delivery.dispatch(rt, again.deliveries)
    wait_for(lambda: all(r.status == "pending" for r in rows(engine, "stuck")), "the deferral")
    assert len(stuck.ids) == len(tried)

    # After the cooldown the endpoint is back: one probe goes first, its success closes the breaker.
    stuck.release.set()
    wall_clock.advance(seconds=COOLDOWN)
    due = claim_now(rt)
    assert len(due.deliveries) == 6
    delivery.dispatch(rt, due.deliveries)
    wait_for(lambda: lane.breaker.state == "closed", "the probe to close the breaker")
    while any(r.status != "succeeded" for r in rows(engine, "stuck")):
        wall_clock.advance(seconds=2)  # those turned away while the probe was out come back
        delivery.dispatch(rt, claim_now(rt).deliveries)
        time.sleep(0.05)
    # Every event reached the endpoint; those that hung were sent again (same webhook-id), the
    # parked ones once each.
    assert sorted(set(stuck.ids)) == sorted(e for e, _ in published)
    assert len(stuck.ids) == 6 + len(tried)


def test_a_delivery_handed_out_twice_is_queued_once_and_a_full_lane_parks_the_rest(
    engine: Engine,
    wall_clock: ManualClock,  # noqa: F811 (the imported fixture)
    stuck: Hanging,
    runtimes: list[Runtime],  # noqa: F811 (imported fixtures)
) -> None:
    rt = runtime(
        runtimes,
        engine,
        wall_clock,
        stuck.url,
        delivery_cfg={"timeout_seconds": 5, "concurrency_per_subscription": 1, "queue_per_subscription": 2},
    )
    for i in range(5):
        apply(rt, record(wall_clock, f"m{i}"))
    ids = [d for _, deliveries in publish_due(rt) for d in deliveries]
    delivery.dispatch(rt, ids[:1])
    wait_for(lambda: len(stuck.ids) == 1, "the first request to hang")
    delivery.dispatch(rt, ids)  # the first again (in flight), two fit the queue, two do not
    delivery.dispatch(rt, ids[1:3])  # queued already: not twice
    lane = rt.lanes.lane(rt.config.subscription("crm"))  # type: ignore[arg-type]
    assert lane.queued == 2
    wait_for(lambda: len([r for r in rows(engine, "crm") if r.status == "pending"]) == 2, "the overflow")
    parked = [r for r in rows(engine, "crm") if r.status == "pending"]
    assert sorted(r.id for r in parked) == sorted(ids[3:]) and all(r.attempts == 0 for r in parked)
    # Shutting down hands back what is still queued, at once and uncharged; the one in flight
    # stays leased (the relay hands it out again when its lease runs out).
    rt.close()
    runtimes.remove(rt)
    by_id = {r.id: r for r in rows(engine, "crm")}
    assert by_id[ids[0]].status == "leased"
    assert all(
        by_id[i].status == "pending" and by_id[i].attempts == 0 and by_id[i].due_at == wall_clock.now()
        for i in ids[1:3]
    )
    stuck.release.set()
    assert stuck.ids == [published_id(engine, ids[0])]  # nothing else was sent


def published_id(engine: Engine, delivery_id: int) -> str:
    return next(r.event_id for r in rows(engine, "crm") if r.id == delivery_id)
