"""Outbound deliveries to a real local HTTP endpoint, on SQLite and PostgreSQL (the `engine` fixture).

Driven as production does: `store.apply_record` -> `relay.claim` -> `publish.publish` ->
`delivery.deliver`, and re-claims through `relay.claim`. Every request the endpoint receives is
verified with the `standardwebhooks` library.

`Webhook.verify` checks `webhook-timestamp` against the wall clock (5 minutes either way), so the
manual clock here starts at the real time and no test moves it more than a few minutes.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import col, select
from standardwebhooks.webhooks import Webhook

from bookingsync.models.errors import ConfigError
from bookingsync.models.meeting import Meeting, SourceRecord
from bookingsync.models.tables import DeliveryRow, EventRow, SubscriptionStateRow
from bookingsync.worker import delivery, redelivery, store
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.config import DeliveryConfig, parse_config
from bookingsync.worker.db import transaction
from bookingsync.worker.publish import publish
from bookingsync.worker.relay import claim
from bookingsync.worker.runtime import Runtime

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_dGhlIG90aGVyIHN1YnNjcmlwdGlvbiBzZWNyZXQ="
GRACE = timedelta(minutes=5)
LEASE = 30.0


# --- a scripted webhook endpoint ---------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class HookServer:
    """http.server on 127.0.0.1 answering each request with the next scripted reply (the last repeats)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: list[Reply] = [Reply(200, body=b"ok")]
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with server._lock:
                    server.received.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    reply = server.script.pop(0) if len(server.script) > 1 else server.script[0]
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, *replies: Reply | int) -> None:
        """Script the answers to the next requests, in order; the last one repeats."""
        with self._lock:
            self.script = [r if isinstance(r, Reply) else Reply(r) for r in replies]

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def hooks() -> Iterator[HookServer]:
    server = HookServer()
    server.start()
    yield server
    server.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the production path ----------------------------------------------------------------------


@pytest.fixture
def wall_clock() -> ManualClock:
    """A manual clock that starts now, so standardwebhooks' timestamp tolerance accepts its signatures."""
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


def make_runtime(
    engine: Engine,
    clock: ManualClock,
    subscriptions: list[dict[str, Any]],
    delivery_cfg: dict[str, Any] | None = None,
) -> Runtime:
    data: dict[str, Any] = {
        "allow_private_targets": True,
        "subscriptions": subscriptions,
    }  # loopback subscribers
    if delivery_cfg:
        data["delivery"] = delivery_cfg
    return Runtime(config=parse_config(data, environ={}), engine=engine, clock=clock)


@pytest.fixture
def runtimes() -> Iterator[list[Runtime]]:
    made: list[Runtime] = []
    yield made
    for rt in made:
        rt.close()


def runtime(
    runtimes: list[Runtime],
    engine: Engine,
    clock: ManualClock,
    url: str,
    *,
    delivery_cfg: dict[str, Any] | None = None,
    extra: list[dict[str, Any]] | None = None,
) -> Runtime:
    rt = make_runtime(
        engine, clock, [{"id": "crm", "url": url, "secret": SECRET}, *(extra or [])], delivery_cfg
    )
    runtimes.append(rt)
    return rt


def record(clock: ManualClock, external_id: str = "m1", status: str = "scheduled") -> SourceRecord:
    # A day ahead: the hasStarted/hasEnded timers never come due while a test runs.
    start = clock.now() + timedelta(days=1)
    return SourceRecord(
        external_id=external_id,
        meeting=Meeting(
            status=status,
            title="Demo",
            start=start,
            end=start + timedelta(minutes=30),
            attendee={"email": "lisa@acme.com", "name": "Lisa"},
        ),
    )


def apply(rt: Runtime, rec: SourceRecord) -> store.Applied:
    with transaction(rt.engine) as session:
        return store.apply_record(
            session,
            connection="leezy-main",
            provider="leezy",
            record=rec,
            raw={"id": rec.external_id},
            now=rt.clock.now(),
            grace=GRACE,
        )


def claim_now(rt: Runtime):
    return claim(rt.engine, rt.clock.now(), lease_seconds=LEASE, limit=100)


def publish_due(rt: Runtime) -> list[tuple[str, list[int]]]:
    """Claim the due events and publish each: (event id, its new delivery ids)."""
    out = []
    for event_id in claim_now(rt).events:
        published = publish(rt, event_id)
        assert published is not None
        out.append((event_id, published.deliveries))
    return out


def book(rt: Runtime, external_id: str = "m1") -> tuple[str, list[int]]:
    apply(rt, record(rt.clock, external_id))
    published = publish_due(rt)
    assert len(published) == 1
    return published[0]


def row(engine: Engine, delivery_id: int) -> DeliveryRow:
    with transaction(engine) as session:
        found = session.get(DeliveryRow, delivery_id)
        assert found is not None
        return found


def reclaim(rt: Runtime, delivery_id: int) -> None:
    """The relay hands the due delivery out again, leased."""
    claimed = claim_now(rt)
    assert claimed.deliveries == [delivery_id]
    assert row(rt.engine, delivery_id).status == "leased"


def verify(received: Received, secret: str = SECRET) -> dict[str, Any]:
    return Webhook(secret).verify(received.body, received.headers)


# --- tests ------------------------------------------------------------------------------------


def test_2xx_succeeds_with_signed_standard_webhook(
    engine: Engine, wall_clock: ManualClock, hooks: HookServer, runtimes: list[Runtime]
) -> None:
    rt = runtime(runtimes, engine, wall_clock, hooks.url())
    hooks.answer(Reply(204))
    applied = apply(rt, record(wall_clock))
    event_id, deliveries = publish_due(rt)[0]
    assert len(deliveries) == 1
    assert row(engine, deliveries[0]).status == "leased"

    assert delivery.deliver(rt, deliveries[0]) == "succeeded"

    done = row(engine, deliveries[0])
    assert (done.status, done.last_status_code, done.last_error) == ("succeeded", 204, None)
    assert done.finished_at == wall_clock.now()
    [got] = hooks.received
    assert got.path == "/hook"
    assert got.headers["webhook-id"] == event_id
    assert got.headers["webhook-timestamp"] == str(int(wall_clock.now().timestamp()))
    assert got.headers["webhook-signature"].startswith("v1,")
    assert got.headers["content-type"] == "application/json"
    body = verify(got)
    assert body == json.loads(got.body)
    assert set(body) == {"type", "timestamp", "data"}
    assert body["type"] == "meeting.booked"
    assert set(body["data"]) == {"event_id", "sequence", "occurred_at", "meeting"}
    assert body["data"]["event_id"] == event_id
    assert body["data"]["sequence"] == 1
    meeting = body["data"]["meeting"]
    assert meeting["id"] == applied.meeting_id
    assert meeting["status"] == "scheduled" and meeting["title"] == "Demo"
    assert meeting["attendee"]["email"] == "lisa@acme.com"
    assert {"start", "end", "timezone", "hosts", "conference_url"} <= set(meeting)
    assert meeting["links"] == [{"connection": "leezy-main", "provider": "leezy", "external_id": "m1"}]
    with pytest.raises(Exception, match="signature"):
        Webhook(OTHER_SECRET).verify(got.body, got.headers)
    # Done is done: a second message for the same delivery sends nothing.
    assert delivery.deliver(rt, deliveries[0]) is None
    assert len(hooks.received) == 1


def test_a_delivery_carries_nothing_a_previous_answer_set(
    engine: Engine, wall_clock: ManualClock, hooks: HookServer, runtimes: list[Runtime]
) -> None:
    """Deliveries go straight through the transport (worker/delivery.py `send`), not an httpx
    Client: no cookie jar replays what one answer set into the next signed request."""
    rt = runtime(runtimes, engine, wall_clock, hooks.url())
    hooks.answer(Reply(204, headers={"set-cookie": "session=abc; Path=/"}))
    first = book(rt, "m1")[1][0]
    second = book(rt, "m2")[1][0]
    assert delivery.deliver(rt, first) == "succeeded"
    assert delivery.deliver(rt, second) == "succeeded"
    assert [("cookie" in got.headers) for got in hooks.received] == [False, False]


def test_500_then_200_retries_with_same_id_and_body(
    engine: Engine, wall_clock: ManualClock, hooks: HookServer, runtimes: list[Runtime]
) -> None:
    rt = runtime(runtimes, engine, wall_clock, hooks.url())
    hooks.answer(Reply(500, body=b"boom"), Reply(200))
    event_id, [delivery_id] = book(rt)

    assert delivery.deliver(rt, delivery_id) == "pending"
    first = row(engine, delivery_id)
    backoff = timedelta(seconds=rt.config.delivery.min_backoff_seconds)
    assert first.status == "pending" and first.due_at == wall_clock.now() + backoff
    assert first.last_status_code == 500 and first.last_error == "boom" and first.lease_until is None
    assert first.finished_at is None

    wall_clock.advance(seconds=1)
    assert claim_now(rt).deliveries == []  # not due yet
    wall_clock.advance(seconds=1)
    reclaim(rt, delivery_id)
    assert row(engine, delivery_id).attempts == 2

    assert delivery.deliver(rt, delivery_id) == "succeeded"
    assert row(engine, delivery_id).status == "succeeded"
    a, b = hooks.received
    assert a.headers["webhook-id"] == b.headers["webhook-id"] == event_id
    assert a.body == b.body
    assert int(b.headers["webhook-timestamp"]) == int(a.headers["webhook-timestamp"]) + 2
    assert verify(a) == verify(b)


def test_backoff_doubles_between_attempts(
    engine: Engine, wall_clock: ManualClock, hooks: HookServer, runtimes: list[Runtime]
) -> None:
    rt = runtime(
        runtimes,
        engine,
        wall_clock,
        hooks.url(),
        delivery_cfg={"min_backoff_seconds": 3, "max_backoff_seconds": 10, "max_attempts": 10},
    )
    hooks.answer(502)
    _, [delivery_id] = book(rt)
    waits = []
    for _ in range(4):
        assert delivery.deliver(rt, delivery_id) == "pending"
        due = row(engine, delivery_id).due_at
        waits.append((due - wall_clock.now()).total_seconds())
        wall_clock.set(due)
        reclaim(rt, delivery_id)
    assert waits == [3, 6, 10, 10]
    assert len(hooks.received) == 4


def test_429_retry_after_seconds_is_honoured(
    engine: Engine, wall_clock: ManualClock, hooks: HookServer, runtimes: list[Runtime]
) -> None:
    rt = runtime(runtimes, engine, wall_clock, hooks.url())
    hooks.answer(Reply(429, {"Retry-After": "120"}), Reply(200))
    _, [delivery_id] = book(rt)
    assert delivery.deliver(rt, delivery_id) == "pending"
    assert row(engine, delivery_id).due_at == wall_clock.now() + timedelta(seconds=120)
    assert row(engine, delivery_id).last_status_code == 429
    wall_clock.advance(seconds=119)
    assert claim_now(rt).deliveries == []
    wall_clock.advance(seconds=1)
    reclaim(rt, delivery_id)
    assert delivery.deliver(rt, delivery_id) == "succeeded"
    verify(hooks.received[-1])


def test_503_retry_after_http_date_is_honoured(
    engine: Engine, wall_clock: ManualClock, hooks: HookServer, runtimes: list[Runtime]
) -> None:
    rt = runtime(runtimes, engine, wall_clock, hooks.url())
    when = wall_clock.now() + timedelta(seconds=90)
    hooks.answer(Reply(503, {"Retry-After": format_datetime(when, usegmt=True)}))
    _, [delivery_id] = book(rt)
    assert delivery.deliver(rt, delivery_id) == "pending"
    assert row(engine, delivery_id).due_at == when


def test_410_disables_subscription_until_enabled(
    engine: Engine, wall_clock: ManualClock, hooks: HookServer, runtimes: list[Runtime]
) -> None:
    rt = runtime(runtimes, engine, wall_clock, hooks.url())
    hooks.answer(Reply(410, body=b"gone"), Reply(200))
    _, [first] = book(rt, "m1")
    _, [second] = book(rt, "m2")  # published before the endpoint said 410: already leased

    assert delivery.deliver(rt, first) == "disabled"  # the decision; the row itself is skipped
    gone = row(engine, first)
    assert (gone.status, gone.last_status_code) == ("skipped", 410)
    assert gone.finished_at == wall_clock.now()
    with transaction(engine) as session:
        state = session.get(SubscriptionStateRow, "crm")
        assert state is not None and state.disabled_at == wall_clock.now()
        assert "410" in (state.disabled_reason or "")
    # The other leased delivery is skipped without a request.
    assert delivery.deliver(rt, second) == "skipped"
    assert row(engine, second).status == "skipped"
    assert len(hooks.received) == 1
    # A later event for that subscription creates no delivery while it is disabled.
    apply(rt, record(wall_clock, "m1", status="cancelled"))
    [(deleted_id, deliveries)] = publish_due(rt)
    assert deliveries == []
    with transaction(engine) as session:
        event = session.exec(select(EventRow).where(EventRow.event_id == deleted_id)).one()
        assert event.type == "meeting.deleted" and event.status == "published"
        assert session.exec(select(DeliveryRow).where(DeliveryRow.event_id == deleted_id)).all() == []
    assert claim_now(rt).deliveries == []

    # Re-enabling brings back everything it missed: the 410'd and skipped deliveries and the new event.
    wall_clock.advance(5)
    with transaction(engine) as session:
        enabled = redelivery.enable(session, rt.config, "crm", wall_clock.now())
    assert (enabled.was_disabled, enabled.requeued, enabled.created) == (True, 2, 1)
    missed = claim_now(rt).deliveries
    assert len(missed) == 3
    for delivery_id in missed:
        assert delivery.deliver(rt, delivery_id) == "succeeded"
    booked_ids = {row(engine, d).event_id for d in (first, second)}
    assert {r.headers["webhook-id"] for r in hooks.received[-3:]} == booked_ids | {deleted_id}
    for received in hooks.received[-3:]:
        verify(received)
    with transaction(engine) as session:
        assert redelivery.enable(session, rt.config, "crm", wall_clock.now()).was_disabled is False
        state = session.get(SubscriptionStateRow, "crm")
        assert state is not None and state.disabled_at is None and state.disabled_reason is None
    event_id, [third] = book(rt, "m3")
    assert delivery.deliver(rt, third) == "succeeded"
    assert hooks.received[-1].headers["webhook-id"] == event_id
    verify(hooks.received[-1])


def test_410_disables_only_that_subscription(
    engine: Engine, wall_clock: ManualClock, hooks: HookServer, runtimes: list[Runtime]
) -> None:
    rt = runtime(
        runtimes,
        engine,
        wall_clock,
        hooks.url(),
        extra=[{"id": "ops", "url": hooks.url("/ops"), "secret": OTHER_SECRET}],
    )
    hooks.answer(410, 200)
    _, deliveries = book(rt, "m1")
    assert len(deliveries) == 2
    subs = {row(engine, d).subscription_id: d for d in deliveries}
    assert delivery.deliver(rt, subs["crm"]) == "disabled"
    assert delivery.deliver(rt, subs["ops"]) == "succeeded"
    verify(hooks.received[-1], OTHER_SECRET)
    _, later = book(rt, "m2")
    assert [row(engine, d).subscription_id for d in later] == ["ops"]


def test_400_is_dead_at_once(
    engine: Engine, wall_clock: ManualClock, hooks: HookServer, runtimes: list[Runtime]
) -> None:
    rt = runtime(runtimes, engine, wall_clock, hooks.url())
    hooks.answer(Reply(400, body=b"bad body"))
    _, [delivery_id] = book(rt)
    assert delivery.deliver(rt, delivery_id) == "dead"
    dead = row(engine, delivery_id)
    assert (dead.status, dead.last_status_code, dead.last_error) == ("dead", 400, "bad body")
    assert dead.finished_at == wall_clock.now() and dead.lease_until is None
    wall_clock.advance(minutes=3)
    assert claim_now(rt).deliveries == []  # never retried on its own
    assert len(hooks.received) == 1


def test_exhausted_retries_are_dead_and_replay_all_dead_resends(
    engine: Engine, wall_clock: ManualClock, hooks: HookServer, runtimes: list[Runtime]
) -> None:
    rt = runtime(
        runtimes,
        engine,
        wall_clock,
        hooks.url(),
        delivery_cfg={"max_attempts": 3, "min_backoff_seconds": 1, "max_backoff_seconds": 5},
    )
    hooks.answer(400, 503, 503, 503)
    refused_event, [refused] = book(rt, "m1")
    flaky_event, [flaky] = book(rt, "m2")
    assert delivery.deliver(rt, refused) == "dead"
    assert delivery.deliver(rt, flaky) == "pending"
    for expected in ("pending", "dead"):
        wall_clock.set(row(engine, flaky).due_at)
        reclaim(rt, flaky)
        assert delivery.deliver(rt, flaky) == expected
    exhausted = row(engine, flaky)
    assert (exhausted.status, exhausted.attempts, exhausted.last_status_code) == ("dead", 3, 503)
    assert len(hooks.received) == 4
    with transaction(engine) as session:
        dead = session.exec(
            select(DeliveryRow.id).where(DeliveryRow.status == "dead").order_by(col(DeliveryRow.id))
        ).all()
    assert dead == [refused, flaky]

    wall_clock.advance(seconds=30)
    with transaction(engine) as session:
        assert delivery.replay(session, wall_clock.now()) == 0  # neither an id nor all_dead: nothing
    with transaction(engine) as session:
        assert delivery.replay(session, wall_clock.now(), all_dead=True) == 2
    for delivery_id in (refused, flaky):
        again = row(engine, delivery_id)
        assert (again.status, again.attempts, again.finished_at) == ("pending", 0, None)
        assert again.due_at == wall_clock.now()

    hooks.answer(200)
    claimed = claim_now(rt)
    assert sorted(claimed.deliveries) == [refused, flaky]
    for delivery_id in claimed.deliveries:
        assert row(engine, delivery_id).status == "leased"
        assert delivery.deliver(rt, delivery_id) == "succeeded"
    resent = hooks.received[-2:]
    assert {r.headers["webhook-id"] for r in resent} == {refused_event, flaky_event}
    for got in resent:
        verify(got)
    # The replayed body is the same bytes as the first attempt's.
    first_bodies = {r.headers["webhook-id"]: r.body for r in hooks.received[:2]}
    assert all(first_bodies[r.headers["webhook-id"]] == r.body for r in resent)


def test_replay_one_delivery_by_id(
    engine: Engine, wall_clock: ManualClock, hooks: HookServer, runtimes: list[Runtime]
) -> None:
    rt = runtime(runtimes, engine, wall_clock, hooks.url())
    hooks.answer(422, 422, 200)
    _, [a] = book(rt, "m1")
    _, [b] = book(rt, "m2")
    assert delivery.deliver(rt, a) == "dead"
    assert delivery.deliver(rt, b) == "dead"
    with transaction(engine) as session:
        assert delivery.replay(session, wall_clock.now(), delivery_id=b) == 1
    reclaim(rt, b)
    assert delivery.deliver(rt, b) == "succeeded"
    assert row(engine, a).status == "dead"


def test_connection_refused_is_retried(
    engine: Engine, wall_clock: ManualClock, runtimes: list[Runtime]
) -> None:
    rt = runtime(runtimes, engine, wall_clock, f"http://127.0.0.1:{free_port()}/hook")
    _, [delivery_id] = book(rt)
    assert delivery.deliver(rt, delivery_id) == "pending"
    refused = row(engine, delivery_id)
    assert refused.status == "pending" and refused.last_status_code is None
    assert "ConnectError" in (refused.last_error or "")
    assert refused.due_at == wall_clock.now() + timedelta(seconds=rt.config.delivery.min_backoff_seconds)


def test_subscription_removed_from_config_is_skipped(
    engine: Engine, wall_clock: ManualClock, hooks: HookServer, runtimes: list[Runtime]
) -> None:
    rt = runtime(runtimes, engine, wall_clock, hooks.url())
    _, [delivery_id] = book(rt)
    without = make_runtime(engine, wall_clock, [])
    runtimes.append(without)
    assert delivery.deliver(without, delivery_id) == "skipped"
    assert hooks.received == []


# --- the pure decision table ------------------------------------------------------------------

CFG = DeliveryConfig(max_attempts=5, min_backoff_seconds=2, max_backoff_seconds=60)
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("code", "retry_after", "attempts", "status", "wait"),
    [
        (200, None, 1, "succeeded", None),
        (201, None, 5, "succeeded", None),
        (204, None, 1, "succeeded", None),
        (299, None, 1, "succeeded", None),
        (410, None, 1, "disabled", None),
        (410, None, 5, "disabled", None),  # 410 wins over an exhausted budget
        (400, None, 1, "dead", None),
        (401, None, 1, "dead", None),
        (403, None, 1, "dead", None),
        (404, None, 1, "dead", None),
        (422, None, 1, "dead", None),
        (302, None, 1, "dead", None),  # only 2xx is success; redirects are not followed
        (500, None, 1, "pending", 2),
        (502, None, 2, "pending", 4),
        (503, None, 3, "pending", 8),
        (504, None, 4, "pending", 16),
        (500, None, 5, "dead", None),  # retries exhausted
        (429, None, 1, "pending", 2),
        (429, 30.0, 1, "pending", 30),  # Retry-After longer than the backoff wins
        (429, 1.0, 4, "pending", 16),  # shorter than the backoff: the backoff wins
        (503, 1000.0, 1, "pending", 60),  # capped at max_backoff_seconds
        (429, 30.0, 5, "dead", None),
        (None, None, 1, "pending", 2),  # no answer: timeout, connection refused
        (None, None, 4, "pending", 16),
        (None, None, 5, "dead", None),
    ],
)
def test_decide(
    code: int | None, retry_after: float | None, attempts: int, status: str, wait: float | None
) -> None:
    decision = delivery.decide(
        delivery.Attempt(status_code=code, retry_after=retry_after), attempts, CFG, NOW
    )
    assert decision.status == status
    if wait is None:
        assert decision.due_at is None
    else:
        assert decision.due_at == NOW + timedelta(seconds=wait)


def test_decide_backoff_is_capped_for_long_runs() -> None:
    cfg = DeliveryConfig(max_attempts=100, min_backoff_seconds=2, max_backoff_seconds=60)
    decision = delivery.decide(delivery.Attempt(status_code=503), 50, cfg, NOW)
    assert decision.due_at == NOW + timedelta(seconds=60)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("", None),
        ("120", 120.0),
        ("0", 0.0),
        ("-5", 0.0),
        ("1.5", 1.5),
        ("soon", None),
        ("Mon, 02 Mar 2026 09:01:00 GMT", 60.0),
        ("Mon, 02 Mar 2026 08:59:00 GMT", 0.0),
    ],
)
def test_retry_after_parsing(value: str | None, seconds: float | None) -> None:
    assert delivery.retry_after_seconds(value, NOW) == seconds


def test_undecodable_secret_is_refused_before_any_delivery() -> None:
    # A secret Webhook() cannot decode would fail inside every attempt; the config refuses it up front.
    with pytest.raises(ConfigError, match=r"subscriptions\[0\]\.secret"):
        parse_config(
            {"subscriptions": [{"id": "crm", "url": "http://127.0.0.1:9/", "secret": "whsec_abcdefghi"}]},
            environ={},
        )


@pytest.mark.parametrize("path", ["httpcore", "transport"])
def test_both_send_paths_read_an_answer_alike(
    hooks: HookServer, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """A POST goes through httpcore with httpx's private error mapping; were a release of httpx to
    move that mapping, it goes through the transport's public path, and reads answers the same."""
    if path == "transport":
        monkeypatch.setattr(delivery, "map_httpcore_exceptions", None)
    through_core: list[str] = []
    core = delivery._send_core

    def counted(*args: Any) -> delivery.Attempt:
        through_core.append(args[1])
        return core(*args)

    monkeypatch.setattr(delivery, "_send_core", counted)
    now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    hooks.answer(Reply(503, headers={"retry-after": "7"}, body=b"busy"), Reply(204))
    with httpx.HTTPTransport() as transport:
        busy = delivery.send(transport, hooks.url(), {"webhook-id": "evt_1"}, b"{}", now, 5.0)
        done = delivery.send(transport, hooks.url(), {"webhook-id": "evt_1"}, b"{}", now, 5.0)
        refused = delivery.send(transport, f"http://127.0.0.1:{free_port()}/hook", {}, b"{}", now, 5.0)
    assert (busy.status_code, busy.error, busy.retry_after) == (503, "busy", 7.0)
    assert (done.status_code, done.error, done.retry_after) == (204, None, None)
    assert refused.status_code is None and refused.error is not None
    assert refused.error.startswith("ConnectError")
    assert [got.headers["webhook-id"] for got in hooks.received] == ["evt_1", "evt_1"]
    assert len(through_core) == (3 if path == "httpcore" else 0)
