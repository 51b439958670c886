"""A deterministic, in-process churn workload: the service's whole path, driven step by step.

Each `step` moves a manual clock and pushes a page of Leezy records (documented resource shape)
through the poller's ingest (`ingest.apply_page`: normalise, upsert, lifecycle diff, events and
timers, cursor), then does what the scheduler and the workers do: claim what is due (the relay,
timers included), publish it (`publish.publish_batch`) and deliver it through the subscription's
lane (`delivery.dispatch`: real HTTP to a subscriber on loopback, outcomes group-committed).
Retention runs every `prune_every` steps (0: never) with windows of minutes, as a long run would
with days.

The changes are drawn from a seeded RNG over a fixed live set: reschedules 1-90 minutes ahead
(so timers keep falling due as the clock moves), title edits, cancellations each replaced by a new
booking. Same seed, same sequence of changes. Used by tests/store/test_memory_flat.py and
bench/history.py.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sqlalchemy import Engine, func, select

from bookingsync.adapters.base import Page, RawRecord
from bookingsync.models.tables import DeliveryRow
from bookingsync.worker import delivery, retention
from bookingsync.worker.clock import ManualClock
from bookingsync.worker.config import parse_config
from bookingsync.worker.ingest import apply_page
from bookingsync.worker.publish import publish_batch
from bookingsync.worker.relay import claim
from bookingsync.worker.runtime import Runtime

CONNECTION = "leezy-churn"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Subscriber:
    """A loopback HTTP endpoint that answers 204 to every POST and counts them."""

    def __init__(self) -> None:
        self.received = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                owner.received += 1
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Churn:
    def __init__(
        self,
        engine: Engine,
        clock: ManualClock,
        subscriber_url: str,
        *,
        live: int = 200,
        per_step: int = 10,
        seconds_per_step: float = 2.0,
        retention_minutes: float = 30.0,
        prune_every: int = 50,
        seed: int = 18,
    ) -> None:
        days = retention_minutes / 1440
        self.cfg = parse_config(
            {
                "allow_private_targets": True,
                "events": {"console": False, "grace_seconds": 60},
                "retention": {
                    "receipt_bodies_days": days,
                    "receipts_days": days,
                    "events_days": days,
                    "cancelled_days": days,
                    "meetings_days": days,
                    "quarantine_days": days,
                },
                "connections": [
                    {
                        "id": CONNECTION,
                        "provider": "leezy",
                        "base_url": "http://127.0.0.1:9",
                        "token": "lzy_at_churn",
                        "enabled": False,
                    }
                ],
                "subscriptions": [{"id": "crm", "url": subscriber_url, "secret": SECRET}],
            },
            environ={},
        )
        self.engine, self.clock = engine, clock
        self.rt = Runtime(config=self.cfg, engine=engine, clock=clock, role="churn")
        self.adapter = self.rt.adapter(CONNECTION)
        self.rng = random.Random(seed)
        self.per_step, self.seconds_per_step, self.prune_every = per_step, seconds_per_step, prune_every
        self.steps = self.changes = self.published = 0
        self.serial = 0
        self.live: list[dict[str, Any]] = [self._new() for _ in range(live)]
        self._apply(self.live)

    def _new(self) -> dict[str, Any]:
        self.serial += 1
        start = self.clock.now() + timedelta(minutes=self.rng.uniform(5, 180))
        return {
            "id": f"meeting_{self.serial:09d}",
            "type": "meeting",
            "attributes": {
                "start_time": iso(start),
                "end_time": iso(start + timedelta(minutes=30)),
                "updated_at": iso(self.clock.now()),
                "status": "scheduled",
                "title": f"Demo call #{self.serial}",
                "timezone": "Europe/Berlin",
                "attendee": {
                    "email": f"prospect.{self.serial}@example.com",
                    "name": f"Prospect {self.serial}",
                },
            },
        }

    def _change(self, index: int) -> list[dict[str, Any]]:
        """One change to live meeting `index`: the records that carry it."""
        old = self.live[index]
        attrs = dict(old["attributes"], updated_at=iso(self.clock.now()))
        roll = self.rng.random()
        if roll < 0.60:
            start = self.clock.now() + timedelta(minutes=self.rng.uniform(1, 90))
            attrs.update(start_time=iso(start), end_time=iso(start + timedelta(minutes=30)))
        elif roll < 0.85:
            attrs["title"] = f"Demo call, edit {self.changes}"
        else:
            attrs["status"] = "cancelled"
            self.live[index] = self._new()
            return [{**old, "attributes": attrs}, self.live[index]]
        self.live[index] = {**old, "attributes": attrs}
        return [self.live[index]]

    def _apply(self, resources: list[dict[str, Any]]) -> None:
        records = [RawRecord(payload=r, external_id=r["id"]) for r in resources]
        apply_page(
            self.rt, CONNECTION, self.adapter, Page(records=records, cursor={"since": iso(self.clock.now())})
        )

    def step(self) -> None:
        self.clock.advance(self.seconds_per_step)
        resources: list[dict[str, Any]] = []
        for index in self.rng.sample(range(len(self.live)), self.per_step):
            resources += self._change(index)
        self._apply(resources)
        self.changes += self.per_step
        now = self.clock.now()
        claimed = claim(self.engine, now, lease_seconds=30, limit=500)
        published = publish_batch(self.rt, claimed.events)
        self.published += len(published)
        ids = sorted({d for p in published for d in p.deliveries} | set(claimed.deliveries))
        if ids:
            delivery.dispatch(self.rt, ids)
        self.steps += 1
        if self.prune_every and self.steps % self.prune_every == 0:
            self.settle()
            retention.prune(self.engine, self.cfg, now)

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until every delivery handed to a lane has its outcome stored."""
        deadline = time.monotonic() + timeout
        while True:
            with self.engine.connect() as conn:
                open_ = conn.execute(
                    select(func.count()).select_from(DeliveryRow).where(DeliveryRow.status == "leased")
                ).scalar_one()
            if not open_:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{open_} deliveries still leased after {timeout:.0f}s")
            time.sleep(0.01)

    def close(self) -> None:
        self.rt.close()
