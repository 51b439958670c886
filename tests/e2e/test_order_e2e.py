"""Never backwards, end to end (issue 13): a webhook and a poll of one meeting, in both orders.

Real processes: `bookingsync sandbox` (Leezy); bookingsync as `run` on SQLite, and as `web`,
`worker` and `scheduler` on PostgreSQL and Redis; reading Leezy every second and receiving its
signed webhooks; and a subscriber that verifies every delivery. Leezy's webhooks reach
bookingsync through a relay of this test that can hold them and let them go.

* Newer webhook, then an older poll snapshot: the meeting moves right after a poll's listing was
  computed (`mutate`) and that poll's answer is held (`slow_answer`); the webhook of the move is
  ingested first, then the held page, with the meeting where it was, arrives.
* Older webhook, then a newer poll... then the webhook: the meeting is moved twice after one
  listing (`mutate` faults), the two webhooks are held, the next poll reads the second move; the
  held webhooks are let go, the first one now older than what was applied.

`delay` faults stall a poll before its listing, so that each set of faults is taken by the
listing request meant to take it (a connection is read by one poll at a time).

Either way the subscriber gets `booked` and one `rescheduled` to where the meeting is, numbered
1 and 2, nothing that moves it back; the older snapshot is counted in `/metrics`
(`bookingsync_stale_snapshots_total`, by source).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.support import SUBSCRIBER_SECRET, Proc, Subscriber, free_port, wait_until
from tests.e2e.test_distributed import backing_services  # noqa: F401 - a fixture, asked for by name
from tests.e2e.test_embedded import book_leezy, iso

pytestmark = pytest.mark.e2e
LEEZY_SECRET = "lzy_ws_order_e2e_0123456789"
LISTING = "/api/v1/meetings"
FORWARDED = ("content-type", "x-leezy-signature", "x-leezy-timestamp", "x-leezy-event", "x-leezy-delivery")


class WebhookRelay:
    """Between the simulator and bookingsync: forwards each webhook at once, or, while `hold()`
    is on, answers the simulator 202 and keeps it until `release()` forwards the kept ones in order."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.kept: list[tuple[dict[str, str], bytes]] = []
        self.holding = False
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k: v for k, v in self.headers.items() if k.lower() in FORWARDED}
                with outer.lock:
                    if outer.holding:
                        outer.kept.append((headers, body))
                        status = 202
                    else:
                        status = 0
                if not status:
                    status = httpx.post(outer.target, content=body, headers=headers, timeout=10).status_code
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/leezy"

    def hold(self) -> None:
        with self.lock:
            self.holding = True

    def release(self) -> list[int]:
        with self.lock:
            kept, self.kept, self.holding = self.kept, [], False
        return [httpx.post(self.target, content=b, headers=h, timeout=10).status_code for h, b in kept]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Deployment:
    base: str  # where Leezy's webhooks go (run, or web)
    metrics: str  # the /metrics of the process that ingests (run, or the worker)
    relay: WebhookRelay


def _config(tmp_path: Path, leezy: str, subscriber: Subscriber, port: int, storage: str) -> Path:
    config = tmp_path / "bookingsync.toml"
    config.write_text(f"""
allow_private_targets = true  # the sandbox and the subscriber are on loopback
{storage}
[server]
port = {port}
[scheduler]
relay_interval_seconds = 0.2
[events]
console = false
[delivery]
min_backoff_seconds = 0.5

[[connections]]
id = "leezy"
provider = "leezy"
base_url = "{leezy}"
token = "lzy_at_sandbox"
webhook_secret = "{LEEZY_SECRET}"
poll_interval_seconds = 1

[[subscriptions]]
id = "crm"
url = "{subscriber.url}"
secret = "{SUBSCRIBER_SECRET}"
""")
    return config


@pytest.fixture(params=["run", pytest.param("roles", marks=[pytest.mark.postgres, pytest.mark.redis])])
def service(
    request: pytest.FixtureRequest, tmp_path: Path, sandbox_proc: dict[str, str], subscriber: Subscriber
) -> Iterator[Deployment]:
    """`bookingsync run` on SQLite, or web + worker + scheduler on PostgreSQL and Redis."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    relay = WebhookRelay(f"{base}/webhooks/leezy")
    httpx.post(
        f"{sandbox_proc['leezy']}/_sandbox/webhooks",
        json={
            "target_url": relay.url,
            "event_types": ["meeting.scheduled", "meeting.cancelled", "meeting.completed"],
            "secret": LEEZY_SECRET,
        },
    ).raise_for_status()
    procs: list[Proc] = []
    with contextlib.ExitStack() as stack:
        stack.callback(relay.stop)
        if request.param == "run":
            storage = f'[database]\nurl = "sqlite:///{tmp_path / "order.db"}"'
            config = _config(tmp_path, sandbox_proc["leezy"], subscriber, port, storage)
            procs.append(Proc("run", ["run", "--config", str(config)], tmp_path))
            metrics = f"{base}/metrics"
        else:
            db_url, broker_url = request.getfixturevalue("backing_services")
            storage = (
                f'[database]\nurl = "{db_url}"\nmigrate_on_start = false\n[broker]\nurl = "{broker_url}"'
            )
            config = _config(tmp_path, sandbox_proc["leezy"], subscriber, port, storage)
            args = ["--config", str(config)]
            migrate = Proc("migrate", ["db", "upgrade", *args], tmp_path).start()
            assert migrate.proc is not None and migrate.proc.wait(60) == 0, migrate.output()
            health = free_port()
            procs += [
                Proc("web", ["web", *args], tmp_path),
                Proc("worker", ["worker", *args, "--health-port", str(health)], tmp_path),
                Proc("scheduler", ["scheduler", *args], tmp_path),
            ]
            metrics = f"http://127.0.0.1:{health}/metrics"
        for proc in procs:
            proc.start()
        try:
            try:
                wait_until(lambda: httpx.get(f"{base}/readyz", timeout=1).is_success, 60, "bookingsync")
                wait_until(lambda: httpx.get(metrics, timeout=1).is_success, 60, "the ingesting process")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n" + "\n".join(p.output()[-2000:] for p in procs)) from None
            yield Deployment(base=base, metrics=metrics, relay=relay)
        finally:
            for proc in procs:  # all asked to stop at once, then waited for
                if proc.alive() and proc.proc is not None:
                    os.killpg(proc.proc.pid, signal.SIGTERM)
            for proc in procs:
                proc.stop()
        for proc in procs:
            assert "Traceback" not in proc.output(), f"{proc.name}:\n{proc.output()}"


def stale_snapshots(metrics: str, source: str) -> float:
    found = re.search(
        rf'bookingsync_stale_snapshots_total\{{connection="leezy",source="{source}"\}} (\S+)',
        httpx.get(metrics, timeout=10).text,
    )
    return float(found.group(1)) if found else 0.0


def starts(subscriber: Subscriber, meeting: str) -> list[tuple[int, str, str]]:
    return [
        (e["data"]["sequence"], e["type"], e["data"]["meeting"]["start"])
        for e in subscriber.events_for(meeting)
    ]


def fault(leezy: str, **body: Any) -> None:
    httpx.post(f"{leezy}/_sandbox/faults", json=body).raise_for_status()


def queued(leezy: str) -> list[dict[str, Any]]:
    return httpx.get(f"{leezy}/_sandbox/faults").json()["faults"]


def moved(start: datetime, hours: int) -> dict[str, str]:
    return {
        "start": iso(start + timedelta(hours=hours)),
        "end": iso(start + timedelta(hours=hours, minutes=30)),
    }


def wire(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_a_webhook_and_a_poll_of_one_meeting_in_either_order_go_forward_once(
    service: Deployment, sandbox_proc: dict[str, str], subscriber: Subscriber
) -> None:
    metrics, relay = service.metrics, service.relay
    leezy = sandbox_proc["leezy"]

    # 1. The newer webhook first, then the older poll snapshot.
    first = book_leezy(leezy, start_in=3600, minutes=30)
    wait_until(lambda: subscriber.types_for(first) == ["meeting.booked"], 20, "booked")
    booked_start = wire(subscriber.events_for(first)[0]["data"]["meeting"]["start"])
    # One listing request must take the slow answer (at its start), then list the meeting as
    # booked (changed less than Leezy's 30 s read margin ago), then see it move: a poll stalled
    # before its listing (`delay`) keeps the next one from starting until both faults are queued.
    fault(leezy, kind="delay", path=LISTING, method="GET", seconds=2, times=2)
    wait_until(lambda: [f["times"] for f in queued(leezy)] == [1], 10, "a poll stalled")
    fault(leezy, kind="slow_answer", path=LISTING, method="GET", seconds=4)
    wait_until(lambda: not queued(leezy), 15, "the next poll to take the slow answer and stall")
    action = {"op": "reschedule", "id": first, **moved(booked_start, 1)}
    fault(leezy, kind="mutate", path=LISTING, offset=0, action=action)
    wait_until(lambda: stale_snapshots(metrics, "poll") >= 1, 20, "the held poll page counted as older")
    # The move's `rescheduled` is delivered on its own, whenever the relay sends it.
    wait_until(lambda: "meeting.rescheduled" in subscriber.types_for(first), 20, "the move delivered")
    time.sleep(1)  # more polls and relay rounds: nothing else may follow
    target = iso(booked_start + timedelta(hours=1))
    assert [(s, t, wire(at)) for s, t, at in starts(subscriber, first)] == [
        (1, "meeting.booked", booked_start),
        (2, "meeting.rescheduled", wire(target)),
    ]

    # 2. The older webhook last: two moves in one listing request, their webhooks held.
    second = book_leezy(leezy, start_in=3600, minutes=30, email="bo@acme.example")
    wait_until(lambda: subscriber.types_for(second) == ["meeting.booked"], 20, "the second booked")
    booked_start = wire(subscriber.events_for(second)[0]["data"]["meeting"]["start"])
    relay.hold()
    fault(leezy, kind="delay", path=LISTING, method="GET", seconds=2)
    wait_until(lambda: not queued(leezy), 10, "a poll stalled before its listing")
    for hours in (1, 2):  # both run once that listing is computed: no poll between the moves
        action = {"op": "reschedule", "id": second, **moved(booked_start, hours)}
        fault(leezy, kind="mutate", path=LISTING, offset=0, action=action)
    wait_until(lambda: len(relay.kept) == 2, 20, "both moves made and their webhooks held")
    wait_until(
        lambda: "meeting.rescheduled" in subscriber.types_for(second), 20, "the poll to read the second move"
    )
    assert relay.release() == [202, 202]  # stored; ingested by the worker
    wait_until(
        lambda: stale_snapshots(metrics, "webhook") >= 1, 20, "the first move's webhook counted as older"
    )
    time.sleep(1)
    assert [(s, t, wire(at)) for s, t, at in starts(subscriber, second)] == [
        (1, "meeting.booked", booked_start),
        (2, "meeting.rescheduled", booked_start + timedelta(hours=2)),
    ]
    # The first meeting's story did not change meanwhile either; nothing was refused.
    assert [t for _, t, _ in starts(subscriber, first)] == ["meeting.booked", "meeting.rescheduled"]
    assert stale_snapshots(metrics, "webhook") == 1 and not subscriber.rejected
