"""Is the database answering, is the broker: the checks behind start-up, `/readyz` and `/metrics`.

Every process serves them: `web` and `run` in their FastAPI app, `worker` and `scheduler` on a
small HTTP server of their own (`ProbeServer`, port `worker.health_port` /
`scheduler.health_port`):

    GET /healthz   200 while the process runs
    GET /readyz    200 when the database and the broker answer, else 503 naming which does not
    GET /metrics   Prometheus text (worker/metrics.py)

Each check answers within a few seconds even when the other side does not (connect timeouts),
so a start-up wait can say what it waits for at once, and a probe never hangs.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from bookingsync.worker.clock import Clock
from bookingsync.worker.config import redact_url

CHECK_TIMEOUT_SECONDS = 3.0
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def database_problem(engine: Engine) -> str | None:
    """None when the database answers a query, else why not (one line, no password)."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return None
    except SQLAlchemyError as exc:
        return _first_line(exc.orig if getattr(exc, "orig", None) is not None else exc)


def broker_problem(url: str) -> str | None:
    """None when the broker at `url` answers, else why not. `memory://` always answers."""
    scheme = urlsplit(url).scheme
    try:
        if scheme in ("redis", "rediss"):
            import redis

            client = redis.Redis.from_url(
                url, socket_connect_timeout=CHECK_TIMEOUT_SECONDS, socket_timeout=CHECK_TIMEOUT_SECONDS
            )
            try:
                client.ping()
            finally:
                client.close()
        elif scheme in ("amqp", "amqps"):
            import pika

            params = pika.URLParameters(url)
            params.socket_timeout = params.blocked_connection_timeout = CHECK_TIMEOUT_SECONDS
            params.connection_attempts, params.retry_delay = 1, 0
            pika.BlockingConnection(params).close()
    except Exception as exc:  # noqa: BLE001 - any failure means "does not answer"; say which
        return _first_line(exc) or type(exc).__name__
    return None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def readiness(engine: Engine, broker_url: str) -> dict[str, str]:
    """{"database": "ok" | why not, "broker": "ok" | why not}."""
    return {"database": database_problem(engine) or "ok", "broker": broker_problem(broker_url) or "ok"}


def describe(engine: Engine, broker_url: str) -> tuple[str, str]:
    """The database and broker as they may be printed (passwords hidden)."""
    return engine.url.render_as_string(hide_password=True), redact_url(broker_url)


class PortTaken(OSError):
    """The port a server was asked to listen on is in use (or not ours to take)."""


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, taken now, so a busy port fails before anything starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not the default 0: asyncio turns Nagle off (TCP_NODELAY) only on accepted
    # sockets whose proto says TCP. Without it a response's body, written after its headers,
    # waits for the client's delayed ACK: 40 ms per request on every keep-alive connection.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)  # uvicorn's own default backlog
    except OSError as exc:
        sock.close()
        reason = "is already in use" if exc.errno in (98, 48) else f"cannot be used ({exc.strerror})"
        raise PortTaken(f"{host}:{port} {reason}") from None
    return sock


class ProbeServer:
    """/healthz, /readyz and /metrics for a process without a web app (worker, scheduler)."""

    def __init__(
        self,
        sock: socket.socket,
        engine: Engine,
        broker_url: str,
        clock: Clock,
        extra: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        outer = self
        self.engine, self.broker_url, self.clock, self.extra = engine, broker_url, clock, extra

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    self._send(
                        200, "application/json", json.dumps({"status": "ok", **outer._extra()}).encode()
                    )
                elif path == "/readyz":
                    checks = readiness(outer.engine, outer.broker_url)
                    ready = all(v == "ok" for v in checks.values())
                    body = {"status": "ready" if ready else "not ready", **checks}
                    self._send(200 if ready else 503, "application/json", json.dumps(body).encode())
                elif path == "/metrics":
                    from bookingsync.worker.metrics import exposition  # not needed to start up

                    self._send(200, PROMETHEUS_TEXT, exposition(outer.engine, outer.clock))
                else:
                    self._send(404, "application/json", b'{"error": "not found"}')

            def _send(self, status: int, kind: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass  # probes every few seconds are not news

        self.server = ThreadingHTTPServer(sock.getsockname()[:2], Handler, bind_and_activate=False)
        self.server.socket.close()
        self.server.socket = sock
        self.server.server_address = sock.getsockname()
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="probes", daemon=True)

    def _extra(self) -> dict[str, Any]:
        return self.extra() if self.extra is not None else {}

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ProbeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
