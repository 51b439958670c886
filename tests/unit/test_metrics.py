"""Metrics that tell the truth: the store's backlog computed at scrape time from indexed queries over
live rows only, never stale; process metrics counted where the work happens; every endpoint."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dramatiq
import httpx
import pytest
from dramatiq.brokers.stub import StubBroker
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, update
from sqlmodel import select

from bookingsync.models.tables import (
    CursorRow,
    DeliveryRow,
    EventRow,
    LeaseRow,
    QuarantineRow,
    ReceiptRow,
    SubscriptionStateRow,
)
from bookingsync.sandbox.server import serve_app
from bookingsync.worker import logs, metrics
from bookingsync.worker.actors import declare
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.config import parse_config
from bookingsync.worker.db import make_engine, transaction, upgrade
from bookingsync.worker.poll import PollResult
from bookingsync.worker.publish import publish
from bookingsync.worker.relay import claim
from bookingsync.worker.runtime import Runtime
from bookingsync.worker.web import create_app
from tests.e2e.support import free_port
from tests.store.test_store_and_relay import apply, record


def scrape(engine: Engine, clock: ManualClock) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition(engine, clock).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def backlog(values: dict, table: str, state: str) -> float:
    return values[("bookingsync_backlog", (("state", state), ("table", table)))]


def add_delivery(
    engine: Engine, event_id: str, status: str, due_in: float, clock: ManualClock, sub: str
) -> None:
    with transaction(engine) as session:
        session.add(
            DeliveryRow(
                event_id=event_id,
                subscription_id=sub,
                status=status,
                created_at=clock.now(),
                due_at=clock.now() + timedelta(seconds=due_in),
            )
        )


def test_backlog_counts_live_rows_by_state_and_drops_to_zero_when_done(
    engine: Engine, clock: ManualClock
) -> None:
    apply(engine, clock, record(clock, "m1"))  # booked due now, hasStarted / hasEnded timers later
    with transaction(engine) as session:
        event_id = session.exec(select(EventRow.event_id).where(EventRow.type == "meeting.booked")).one()
        session.add(
            ReceiptRow(
                connection="c",
                delivery_id="r1",
                event_type="x",
                body="{}",
                status="received",
                due_at=clock.now(),
                received_at=clock.now(),
            )
        )
        session.add(
            ReceiptRow(
                connection="c",
                delivery_id="r2",
                event_type="x",
                body="{}",
                status="failed",
                due_at=clock.now(),
                received_at=clock.now(),
            )
        )
        session.add(
            ReceiptRow(
                connection="c",
                delivery_id="r3",
                event_type="x",
                body="{}",
                status="done",
                due_at=clock.now(),
                received_at=clock.now(),
            )
        )
        for status in ("open", "superseded"):
            session.add(
                QuarantineRow(
                    connection="c",
                    source="poll",
                    raw={},
                    raw_hash=status,
                    reason="bad",
                    status=status,
                    created_at=clock.now(),
                    last_seen_at=clock.now(),
                )
            )
        session.add(CursorRow(connection="leezy-main", value={"since": "x"}, updated_at=clock.now()))
        session.add(
            SubscriptionStateRow(subscription_id="gone", disabled_at=clock.now(), disabled_reason="410")
        )
        session.add(
            LeaseRow(name="scheduler-leader", holder="sched-1", until=clock.now() + timedelta(seconds=15))
        )
    for status, due_in, sub in (
        ("pending", 0, "a"),
        ("pending", 60, "b"),
        ("leased", 0, "c"),
        ("dead", 0, "d"),
        ("succeeded", 0, "e"),
    ):
        add_delivery(engine, event_id, status, due_in, clock, sub)
    clock.advance(seconds=30)

    values = scrape(engine, clock)
    assert values[("bookingsync_database_up", ())] == 1
    assert (
        backlog(values, "events", "due"),
        backlog(values, "events", "scheduled"),
        backlog(values, "events", "leased"),
    ) == (1, 2, 0)
    assert (
        backlog(values, "deliveries", "due"),
        backlog(values, "deliveries", "waiting"),
        backlog(values, "deliveries", "leased"),
        backlog(values, "deliveries", "dead"),
    ) == (1, 1, 1, 1)
    assert (
        backlog(values, "receipts", "due"),
        backlog(values, "receipts", "failed"),
        backlog(values, "receipts", "leased"),
    ) == (1, 1, 0)
    assert backlog(values, "quarantine", "open") == 1
    assert not any(
        name == "bookingsync_backlog" and dict(labels).get("state") in ("succeeded", "done", "superseded")
        for name, labels in values
    )
    assert values[("bookingsync_relay_lag_seconds", (("table", "events"),))] == pytest.approx(30, abs=1)
    assert values[("bookingsync_cursor_age_seconds", (("connection", "leezy-main"),))] == pytest.approx(
        30, abs=1
    )
    assert values[("bookingsync_subscription_disabled", (("subscription", "gone"),))] == 1
    assert values[("bookingsync_leader_lease_seconds", (("holder", "sched-1"),))] == pytest.approx(-15, abs=1)

    with transaction(engine) as session:  # everything finishes
        session.execute(update(EventRow).values(status="published"))
        session.execute(update(DeliveryRow).values(status="succeeded"))
        session.execute(update(ReceiptRow).values(status="done"))
        session.execute(update(QuarantineRow).values(status="replayed"))
    values = scrape(engine, clock)
    live = {key: value for key, value in values.items() if key[0] == "bookingsync_backlog"}
    assert live and set(live.values()) == {0}, "a finished row is never reported as waiting"
    assert values[("bookingsync_relay_lag_seconds", (("table", "events"),))] == 0


def _plan(engine: Engine, query: object) -> str:
    compiled = query.compile(
        dialect=engine.dialect,  # type: ignore[attr-defined]
        compile_kwargs={"render_postcompile": True},
    )
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            params = tuple(str(compiled.params[name]) for name in compiled.positiontup)
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + compiled.string, params).all()
            return "\n".join(str(row[-1]) for row in rows)
        conn.exec_driver_sql("SET enable_seqscan = off")  # a Seq Scan left now means no index serves it
        rows = conn.exec_driver_sql("EXPLAIN " + compiled.string, compiled.params).all()
        conn.rollback()
        return "\n".join(row[0] for row in rows)


def test_every_scrape_query_is_served_by_an_index(engine: Engine, clock: ManualClock) -> None:
    for name, query in metrics.backlog_queries(clock.now()).items():
        plan = _plan(engine, query)
        if engine.dialect.name == "sqlite":
            assert "USING" in plan and "INDEX" in plan and "SEARCH" in plan, (name, plan)
        else:
            assert "Seq Scan" not in plan, (name, plan)


def test_the_collector_answers_when_the_database_does_not(tmp_path: Path, clock: ManualClock) -> None:
    engine = make_engine(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none")
    started = time.monotonic()
    values = scrape(engine, clock)
    assert values[("bookingsync_database_up", ())] == 0 and time.monotonic() - started < 5
    assert not any(key[0] == "bookingsync_backlog" for key in values)


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_timer_lateness_and_published_events_are_measured_at_publication(
    engine: Engine, clock: ManualClock
) -> None:
    rt = Runtime(config=parse_config({"events": {"console": False}}, environ={}), engine=engine, clock=clock)
    apply(engine, clock, record(clock, "late", start_min=1))
    before = (
        sample("bookingsync_timer_lateness_seconds_count", type="meeting.hasStarted"),
        sample("bookingsync_timer_lateness_seconds_sum", type="meeting.hasStarted"),
        sample("bookingsync_events_published_total", type="meeting.booked"),
    )
    clock.advance(seconds=60 + 7)  # the start passed 7 s ago
    for event_id in claim(engine, clock.now(), lease_seconds=30, limit=10).events:
        publish(rt, event_id)
    assert sample("bookingsync_timer_lateness_seconds_count", type="meeting.hasStarted") == before[0] + 1
    assert sample("bookingsync_timer_lateness_seconds_sum", type="meeting.hasStarted") - before[
        1
    ] == pytest.approx(7, abs=0.01)
    assert sample("bookingsync_events_published_total", type="meeting.booked") == before[2] + 1


def test_polls_are_counted_by_outcome_and_timed() -> None:
    outcomes = iter(
        [
            PollResult(connection="p", ran=True, records=5),
            PollResult(connection="p", ran=True, error="503 after retries"),
            PollResult(connection="p", ran=False),
        ]
    )

    @metrics.timed_poll
    def fake_poll(rt: object, connection_id: str) -> PollResult:
        time.sleep(0.01)
        return next(outcomes)

    before = {
        o: sample("bookingsync_polls_total", connection="metrics-test", outcome=o)
        for o in ("ok", "error", "busy")
    }
    count = sample("bookingsync_poll_seconds_count", connection="metrics-test")
    for _ in range(3):
        fake_poll(None, "metrics-test")
    for outcome in ("ok", "error", "busy"):
        assert (
            sample("bookingsync_polls_total", connection="metrics-test", outcome=outcome)
            == before[outcome] + 1
        )
    assert (
        sample("bookingsync_poll_seconds_count", connection="metrics-test") == count + 2
    )  # busy polls do no work
    assert sample("bookingsync_poll_records_total", connection="metrics-test") >= 5


def test_messages_are_counted_per_actor_and_logs_carry_their_context(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = StubBroker()
    broker.add_middleware(logs.BindContext())
    broker.add_middleware(metrics.Messages())
    log = logging.getLogger("bookingsync.test")
    seen: list[dict] = []

    def deliver(delivery_id: int) -> None:
        log.warning("delivering")
        logs.bind(meeting="mtg_1")
        seen.append(logs.context())
        if delivery_id == 2:
            raise ValueError("endpoint said no")

    dramatiq.actor(deliver, broker=broker, actor_name="bookingsync.deliver", queue_name="q", max_retries=0)
    labels = {"queue_name": "q", "actor_name": "bookingsync.deliver"}
    before = (sample("dramatiq_messages_total", **labels), sample("dramatiq_message_errors_total", **labels))
    worker = dramatiq.Worker(broker, worker_threads=1)
    worker.start()
    try:
        broker.actors["bookingsync.deliver"].send(1)
        broker.actors["bookingsync.deliver"].send(2)
        broker.join("q", fail_fast=False)
        worker.join()
    finally:
        worker.stop()
    assert sample("dramatiq_messages_total", **labels) == before[0] + 2
    assert sample("dramatiq_message_errors_total", **labels) == before[1] + 1
    assert sample("dramatiq_messages_inprogress", **labels) == 0
    assert [ctx["delivery"] for ctx in seen] == [1, 2] and all(ctx["meeting"] == "mtg_1" for ctx in seen)
    assert logs.context() == {}, "the context ends with the message"


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[httpx.Client, Runtime]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'web.db'}")
    upgrade(engine)
    rt = Runtime(
        config=parse_config({"broker": {"url": f"redis://127.0.0.1:{free_port()}/0"}}, environ={}),
        engine=engine,
        actors=declare(StubBroker()),
    )
    served = serve_app(create_app(rt))
    with httpx.Client(base_url=served.url, timeout=15) as client:
        yield client, rt
    served.stop()
    engine.dispose()


def test_web_metrics_and_readiness_tell_the_truth(web: tuple[httpx.Client, Runtime]) -> None:
    client, rt = web
    text = client.get("/metrics").text
    for name in (
        "bookingsync_backlog{",
        "bookingsync_relay_lag_seconds{",
        "process_resident_memory_bytes",
        "bookingsync_database_up 1.0",
    ):
        assert name in text, name
    assert "bookingsync_outbox_backlog" not in text
    started = time.monotonic()
    ready = client.get("/readyz")  # the broker's port has nothing behind it
    assert ready.status_code == 503 and time.monotonic() - started < 5
    assert ready.json()["database"] == "ok" and ready.json()["broker"] != "ok"
    rt.config = parse_config({}, environ={})  # memory:// always answers
    assert client.get("/readyz").json() == {"status": "ready", "database": "ok", "broker": "ok"}
