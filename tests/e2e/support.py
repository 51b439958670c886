"""Real processes for end-to-end tests: the sandbox, bookingsync itself, and a subscriber."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

BIN = Path(sys.executable).parent / "bookingsync"
SUBSCRIBER_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (httpx.TransportError, OSError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_for_more_requests(simulator: str, path: str, more: int, timeout: float, what: str) -> None:
    """Wait until the simulator at `simulator` has answered `more` requests on `path` beyond those in
    its log now (it notes a request as it answers it). For a connection read in one request at a
    time, with `more` >= 3: a read that began after this call was answered, and taken in by us
    before the next one began."""

    def times() -> list[datetime]:
        log = httpx.get(f"{simulator}/_sandbox/requests", timeout=10).json()["requests"]
        return [datetime.fromisoformat(entry["received_at"]) for entry in log if entry["path"] == path]

    # Marked on the simulator's own clock, which a test may have set off ours.
    mark = max(times(), default=datetime.min.replace(tzinfo=UTC))
    wait_until(lambda: sum(1 for at in times() if at > mark) >= more, timeout, what)


class Proc:
    """A bookingsync subprocess whose output goes to a log file the failure message shows."""

    def __init__(self, name: str, args: list[str], log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.name, self.args = name, args
        self.log = log_dir / f"{name}.log"
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """What runs: the bookingsync CLI with `args` (bench/services.py runs scripts too)."""
        return [str(BIN), *self.args]

    def start(self) -> Proc:
        with self.log.open("ab") as handle:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                self.command(),
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, no goodbye: what a crash or an OOM kill looks like."""
        if self.alive():
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Received:
    headers: dict[str, str]
    body: dict[str, Any]
    at: float = field(default_factory=time.time)  # when it arrived (wall clock, seconds)


@dataclass
class Subscriber:
    """A webhook consumer on loopback that verifies every delivery with the standardwebhooks library."""

    secret: str = SUBSCRIBER_SECRET
    received: list[Received] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def start(self) -> Subscriber:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    body = Webhook(outer.secret).verify(raw, headers)
                except WebhookVerificationError as exc:
                    with outer.lock:
                        outer.rejected.append(str(exc))
                    self.send_response(400)
                    self.end_headers()
                    return
                with outer.lock:
                    outer.received.append(Received(headers=headers, body=body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def events_for(self, external_id: str) -> list[dict[str, Any]]:
        """Distinct events (by webhook-id) of the meeting linked to `external_id`, in sequence order."""
        with self.lock:
            items = list(self.received)
        seen: dict[str, dict[str, Any]] = {}
        for item in items:
            links = item.body["data"]["meeting"]["links"]
            if any(link["external_id"] == external_id for link in links):
                seen.setdefault(item.headers["webhook-id"], item.body)
        return sorted(seen.values(), key=lambda body: body["data"]["sequence"])

    def arrival(self, external_id: str, event_type: str) -> float | None:
        """When the first delivery of `event_type` for the meeting linked to `external_id` arrived."""
        with self.lock:
            items = list(self.received)
        return min(
            (
                item.at
                for item in items
                if item.body["type"] == event_type
                and any(link["external_id"] == external_id for link in item.body["data"]["meeting"]["links"])
            ),
            default=None,
        )

    def types_for(self, external_id: str) -> list[str]:
        return [body["type"] for body in self.events_for(external_id)]


class Hanging:
    """An endpoint that reads each request and then says nothing until released (or `hang` seconds),
    then answers 204; it notes each request's webhook-id."""

    def __init__(self, hang: float = 60.0) -> None:
        self.ids: list[str] = []
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.ids.append(self.headers.get("webhook-id", ""))
                outer.release.wait(hang)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def leezy_signed(
    secret: str, payload: dict[str, Any], *, delivery_id: str, event: str, timestamp: int | None = None
) -> tuple[dict[str, str], bytes]:
    """A delivery signed the way Leezy's production docs describe, computed here independently."""
    body = json.dumps(payload).encode()
    ts = str(timestamp if timestamp is not None else int(time.time()))
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {
        "X-Leezy-Signature": f"sha256={digest}",
        "X-Leezy-Timestamp": ts,
        "X-Leezy-Event": event,
        "X-Leezy-Delivery": delivery_id,
        "Content-Type": "application/json",
    }, body


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
