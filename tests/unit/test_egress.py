"""The send-time check: connections open only to public addresses checked at connect time, so DNS
cannot rebind a target to a private address after the config was checked."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest

from bookingsync.worker import delivery, egress
from bookingsync.worker.clock import SystemClock
from bookingsync.worker.config import parse_config
from bookingsync.worker.db import make_engine, transaction, upgrade
from bookingsync.worker.publish import publish
from bookingsync.worker.relay import claim
from bookingsync.worker.runtime import Runtime
from tests.e2e.support import SUBSCRIBER_SECRET
from tests.store.test_store_and_relay import apply, record


@pytest.fixture
def server() -> Iterator[tuple[str, list[str]]]:
    """A loopback endpoint that records every request path it gets."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            hits.append(self.path)
            self.send_response(204)
            self.end_headers()

        do_GET = do_POST  # noqa: N815

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()
    httpd.server_close()


def test_a_loopback_target_is_refused_before_any_byte_is_sent(server: tuple[str, list[str]]) -> None:
    address, hits = server
    with egress.delivery_client(timeout=3, allow_private=False) as client:
        with pytest.raises(egress.PrivateTarget, match="127.0.0.1 is a loopback address"):
            client.post(f"http://{address}/hook", content=b"{}")
    assert hits == []
    with egress.delivery_client(timeout=3, allow_private=True) as client:
        assert client.post(f"http://{address}/hook", content=b"{}").status_code == 204
    assert hits == ["/hook"]


def test_a_name_rebound_to_a_private_address_after_the_check_is_refused_at_connect() -> None:
    answers = iter([["93.184.215.14"], ["169.254.169.254"]])  # public when checked, metadata when connecting

    def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    assert egress.problem("http://crm.rebind.example/hook", resolver=rebinding) is None
    client = httpx.Client(transport=egress.guarded_transport(resolver=rebinding), timeout=3)
    with pytest.raises(egress.PrivateTarget, match="169.254.169.254 is a link-local"):
        client.post("http://crm.rebind.example/hook", content=b"{}")


def test_a_mixed_answer_is_refused_whole() -> None:
    client = httpx.Client(
        transport=egress.guarded_transport(resolver=lambda h, p: ["93.184.215.14", "10.0.0.1"]), timeout=3
    )
    with pytest.raises(egress.PrivateTarget, match="10.0.0.1 is a private address"):
        client.get("http://mixed.example/")


def test_the_connection_goes_to_the_address_that_was_checked(
    server: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name does not resolve on this machine at all: the request can only arrive through the
    address the guard checked (loopback is let through here by patching the policy, not the guard)."""
    address, hits = server
    host, port = address.split(":")
    monkeypatch.setattr(egress, "forbidden", lambda address: None)
    client = httpx.Client(transport=egress.guarded_transport(resolver=lambda h, p: [host]), timeout=3)
    assert client.post(f"http://only-in-the-guard.invalid:{port}/checked", content=b"{}").status_code == 204
    assert hits == ["/checked"]


def test_the_delivery_path_refuses_a_private_target_and_retries_with_the_reason(
    tmp_path: Path, server: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subscription whose name passed the config check but resolves to loopback when sending."""
    address, hits = server
    host, port = address.split(":")
    monkeypatch.setattr(egress, "resolve", lambda h, p: ["93.184.215.14"])  # what the config check sees
    cfg = parse_config(
        {
            "subscriptions": [
                {"id": "crm", "url": f"http://crm.rebind.example:{port}/hook", "secret": SUBSCRIBER_SECRET}
            ],
            "events": {"console": False},
        },
        environ={},
    )
    monkeypatch.setattr(egress, "resolve", lambda h, p: [host])  # what the name says when we connect
    engine = make_engine(f"sqlite:///{tmp_path / 'egress.db'}")
    upgrade(engine)
    clock = SystemClock()
    rt = Runtime(config=cfg, engine=engine, clock=clock)
    try:
        apply(engine, clock, record(clock, "rebound"))
        [event_id] = claim(engine, clock.now(), lease_seconds=30, limit=10).events
        published = publish(rt, event_id)
        assert published is not None
        [delivery_id] = published.deliveries
        assert delivery.deliver(rt, delivery_id) == "pending"  # retried later, like any unreachable endpoint
        with transaction(engine) as session:
            row = session.get(delivery.DeliveryRow, delivery_id)
            assert row is not None and "loopback" in (row.last_error or "") and row.last_status_code is None
        assert hits == []
    finally:
        rt.close()
        engine.dispose()


class Wire(httpcore.NetworkStream):
    """A connection that records each send and answers one scripted response."""

    def __init__(self) -> None:
        self.sends: list[bytes] = []

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.sends.append(buffer)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"

    def close(self) -> None:
        pass


def test_a_delivery_request_leaves_in_one_write() -> None:
    """Head and body in one send (egress.OneWrite), not httpcore's two."""
    wire = Wire()
    connection = httpcore.HTTP11Connection(
        httpcore.Origin(b"http", b"crm.example", 80), egress.OneWrite(wire)
    )
    response = connection.request("POST", "http://crm.example/hook", content=b'{"type":"meeting.booked"}')
    assert response.status == 204
    [sent] = wire.sends
    assert sent.startswith(b"POST /hook HTTP/1.1\r\n") and sent.endswith(b'\r\n\r\n{"type":"meeting.booked"}')
